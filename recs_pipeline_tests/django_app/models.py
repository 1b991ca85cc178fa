"""The app's models, declared from docs/data-contract.md as a Django team would."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models.functions import Now


class User(AbstractUser):
    """The custom user model: Django's auth columns plus the contract's `region`."""

    region = models.CharField(max_length=16, default="eu")

    class Meta:
        db_table = "users"


class Game(models.Model):
    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=100)

    class Meta:
        db_table = "games"


class GameProfile(models.Model):
    user = models.ForeignKey(User, on_delete=models.CASCADE)
    game = models.ForeignKey(Game, on_delete=models.CASCADE)
    skill_rating = models.IntegerField()
    created_at = models.DateTimeField()

    class Meta:
        db_table = "game_profiles"
        unique_together = [("user", "game")]


class ProfileCompleteness(models.Model):
    user = models.OneToOneField(User, on_delete=models.CASCADE, primary_key=True)
    percentage = models.IntegerField()
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "profile_completeness"


class Team(models.Model):
    name = models.CharField(max_length=100)
    game = models.ForeignKey(Game, on_delete=models.CASCADE)
    region = models.CharField(max_length=16)
    captain = models.ForeignKey(User, on_delete=models.CASCADE, related_name="captained")
    max_members = models.IntegerField()
    is_recruiting = models.BooleanField(default=True)
    created_at = models.DateTimeField()

    class Meta:
        db_table = "teams"


class TeamMember(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE)
    user = models.ForeignKey(User, on_delete=models.CASCADE)
    joined_at = models.DateTimeField()
    left_at = models.DateTimeField(null=True)

    class Meta:
        db_table = "team_members"


class Tournament(models.Model):
    name = models.CharField(max_length=200)
    game = models.ForeignKey(Game, on_delete=models.CASCADE)
    region = models.CharField(max_length=16)
    skill_min = models.IntegerField(null=True)
    skill_max = models.IntegerField(null=True)
    max_participants = models.IntegerField()
    status = models.CharField(max_length=20)
    registration_closes_at = models.DateTimeField()
    starts_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True)
    created_at = models.DateTimeField()

    class Meta:
        db_table = "tournaments"


class TournamentParticipant(models.Model):
    tournament = models.ForeignKey(Tournament, on_delete=models.CASCADE)
    user = models.ForeignKey(User, on_delete=models.CASCADE)
    team = models.ForeignKey(Team, on_delete=models.SET_NULL, null=True)
    registered_at = models.DateTimeField()
    placement = models.IntegerField(null=True)

    class Meta:
        db_table = "tournament_participants"
        unique_together = [("tournament", "user")]


class Activity(models.Model):
    user = models.ForeignKey(User, on_delete=models.CASCADE)
    activity_type = models.CharField(max_length=40)
    object_type = models.CharField(max_length=40, null=True)
    object_id = models.BigIntegerField(null=True)
    created_at = models.DateTimeField(db_index=True)
    metadata = models.TextField(null=True)

    class Meta:
        db_table = "activities"


class Achievement(models.Model):
    code = models.CharField(max_length=50, unique=True)
    name = models.CharField(max_length=100)
    description = models.TextField()
    event_type = models.CharField(max_length=40)
    metric = models.CharField(max_length=40)
    threshold = models.IntegerField()
    points = models.IntegerField()
    is_active = models.BooleanField(default=True)

    class Meta:
        db_table = "achievements"


class AppEvent(models.Model):
    """The transactional outbox: written in the same `transaction.atomic()` as the change."""

    event_type = models.CharField(max_length=40)
    user = models.ForeignKey(User, on_delete=models.SET_NULL, null=True)
    payload = models.TextField(null=True)
    created_at = models.DateTimeField()

    class Meta:
        db_table = "app_events"


class UserAchievement(models.Model):
    user = models.ForeignKey(User, on_delete=models.CASCADE)
    achievement = models.ForeignKey(Achievement, on_delete=models.CASCADE)
    awarded_at = models.DateTimeField()
    event = models.ForeignKey(AppEvent, on_delete=models.SET_NULL, null=True)

    class Meta:
        db_table = "user_achievements"
        unique_together = [("user", "achievement")]


class TournamentRecommendation(models.Model):
    """The pipeline's output, read-only for the app (the pipeline owns and replaces it)."""

    pk = models.CompositePrimaryKey("user_id", "rank")
    user = models.ForeignKey(User, on_delete=models.DO_NOTHING, db_constraint=False)
    tournament = models.ForeignKey(Tournament, on_delete=models.DO_NOTHING, db_constraint=False)
    rank = models.IntegerField()
    score = models.FloatField()
    reason = models.CharField(max_length=200)
    model_version = models.CharField(max_length=64)
    generated_at = models.DateTimeField()

    class Meta:
        db_table = "tournament_recommendations"
        managed = False


class TeamRecommendation(models.Model):
    pk = models.CompositePrimaryKey("user_id", "rank")
    user = models.ForeignKey(User, on_delete=models.DO_NOTHING, db_constraint=False)
    team = models.ForeignKey(Team, on_delete=models.DO_NOTHING, db_constraint=False)
    rank = models.IntegerField()
    score = models.FloatField()
    reason = models.CharField(max_length=200)
    model_version = models.CharField(max_length=64)
    generated_at = models.DateTimeField()

    class Meta:
        db_table = "team_recommendations"
        managed = False


class RecommendationRefreshRequest(models.Model):
    """A one-user refresh the app asks for: create one in the transaction of the change."""

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(User, on_delete=models.DO_NOTHING, db_constraint=False)
    requested_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "recommendation_refresh_requests"
        managed = False

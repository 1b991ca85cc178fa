"""The pipeline next to a real Django app: tables made by `migrate`, rows written and read by ORM.

The app (`recs_pipeline_tests/django_app`) declares the contract's tables the ordinary Django way:
ForeignKeys (`DEFERRABLE INITIALLY DEFERRED`, no database ON DELETE), BigAutoField, a custom user
model with Django's auth columns, `USE_TZ=True`, and on SQLite the settings docs/operations.md
gives the app team. On both backends: events are written inside `transaction.atomic()`, then the
nightly job, the achievements sensor + job and the retention purge run as the daemon runs them
(definitions from the code location, the app database from `RECS_DATABASE_URL`), and the app reads
the results through the ORM.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from recs_pipeline.bootstrap import DEFAULT_ACHIEVEMENTS
from recs_pipeline.definitions import defs
from recs_pipeline.defs.achievements.job import achievements_job
from recs_pipeline.defs.achievements.sensor import (
    AchievementSensorSettings,
    build_achievement_events_sensor,
)
from recs_pipeline.defs.recommendations.sensors import user_refresh_request_sensor
from recs_pipeline.resources import AppDatabase
from recs_pipeline.tags import RUN_KEY_TAG
from recs_pipeline_tests.conftest import postgres_url
from recs_pipeline_tests.django_app import runtime

GAMES = ("valorant", "cs2", "dota2")
USERS = 240


@pytest.fixture
def django_db(database_url: str, backend: str, postgres_database: str, tmp_path: Path,
              monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Django configured on this test's database, migrated; yields the Django alias."""
    sqlite_path = str(tmp_path / "app.db")
    runtime.configure(sqlite_path, postgres_url(postgres_database))
    from django.core.management import call_command
    from django.db import connections

    if backend == "sqlite":
        assert database_url == f"sqlite:///{sqlite_path}"
    call_command("migrate", database=backend, verbosity=0)
    monkeypatch.setenv("RECS_DATABASE_URL", database_url)
    yield backend
    connections[backend].close()


def _build_platform(alias: str) -> dict[str, int]:
    """Users, games, profiles, tournaments (past and open), teams, memberships and activities,
    relative to now; the team joins and completions are written with their outbox event inside
    one `transaction.atomic()`, as the app's services do."""
    from django.db import transaction
    from django.utils import timezone

    from recs_pipeline_tests.django_app import models as m

    now = timezone.now()
    db = m.User.objects.db_manager(alias)
    games = [m.Game.objects.using(alias).create(slug=s, name=s.upper()) for s in GAMES]
    regions = ("eu", "na")
    users = [m.User(username=f"player{i}", email=f"player{i}@example.com", password="!",
                    region=regions[i % 2], date_joined=now - timedelta(days=300))
             for i in range(USERS)]
    db.bulk_create(users)
    users = list(m.User.objects.using(alias).order_by("id"))
    m.GameProfile.objects.using(alias).bulk_create([
        m.GameProfile(user=u, game=games[(i + k) % 3], skill_rating=800 + (i * 37) % 1600,
                      created_at=now - timedelta(days=290))
        for i, u in enumerate(users) for k in range(1 + i % 2)])
    m.ProfileCompleteness.objects.using(alias).bulk_create([
        m.ProfileCompleteness(user=u, percentage=100 if i % 4 == 0 else 60, updated_at=now)
        for i, u in enumerate(users)])
    m.Achievement.objects.using(alias).bulk_create([
        m.Achievement(code=a.code, name=a.name, description=a.description,
                      event_type=a.event_type, metric=a.metric, threshold=a.threshold,
                      points=a.points) for a in DEFAULT_ACHIEVEMENTS])

    def tournament(i: int, open_: bool) -> m.Tournament:
        start = now + timedelta(days=3 + i % 5) if open_ else now - timedelta(days=5 + 7 * i)
        return m.Tournament(
            name=f"{GAMES[i % 3]} {'Open' if open_ else 'Cup'} #{i}", game=games[i % 3],
            region=("global", "eu", "na")[i % 3], max_participants=64,
            status="registration_open" if open_ else "completed",
            registration_closes_at=start - timedelta(hours=2), starts_at=start,
            completed_at=None if open_ else start + timedelta(hours=4),
            created_at=(now - timedelta(days=2)) if open_ else start - timedelta(days=6))

    m.Tournament.objects.using(alias).bulk_create(
        [tournament(i, False) for i in range(24)] + [tournament(i, True) for i in range(30)])
    past = list(m.Tournament.objects.using(alias).filter(status="completed"))
    teams = m.Team.objects.using(alias)
    teams.bulk_create([
        m.Team(name=f"Team {i}", game=games[i % 3], region=regions[i % 2],
               captain=users[i], max_members=6, created_at=now - timedelta(days=250))
        for i in range(30)])
    team_list = list(teams.order_by("id"))

    old = now - timedelta(days=200)  # older than the 90-day retention window
    events = 0
    for i, u in enumerate(users[:120]):
        team = team_list[i % 30]
        joined = old + timedelta(hours=i) if i % 2 else now - timedelta(days=10, hours=i)
        with transaction.atomic(using=alias):
            m.TeamMember.objects.using(alias).create(team=team, user=u, joined_at=joined)
            m.AppEvent.objects.using(alias).create(
                event_type="team_joined", user=u, created_at=joined,
                payload=json.dumps({"team_id": team.id}))
        events += 1
        if i % 2:  # an old second team: its event earns nothing (three_teams needs 3)
            second = team_list[(i + 7) % 30]
            with transaction.atomic(using=alias):
                m.TeamMember.objects.using(alias).create(
                    team=second, user=u, joined_at=joined + timedelta(minutes=5))
                m.AppEvent.objects.using(alias).create(
                    event_type="team_joined", user=u, created_at=joined + timedelta(minutes=5),
                    payload=json.dumps({"team_id": second.id}))
            events += 1
        for k, t in enumerate(past[i % 6:i % 6 + 3]):
            finished = t.completed_at or now
            with transaction.atomic(using=alias):
                m.TournamentParticipant.objects.using(alias).create(
                    tournament=t, user=u, registered_at=t.registration_closes_at
                    - timedelta(hours=3), placement=1 + (i + k) % 8)
                m.AppEvent.objects.using(alias).create(
                    event_type="tournament_completed", user=u, created_at=finished,
                    payload=json.dumps({"tournament_id": t.id}))
            events += 1
    m.Activity.objects.using(alias).bulk_create([
        m.Activity(user=u, activity_type="login", created_at=(old if i % 3 == 0 else now)
                   - timedelta(minutes=i)) for i, u in enumerate(users)])
    return {"events": events}


def _run_sensor_and_achievements(instance: dg.DagsterInstance, database_url: str) -> int:
    """Sensor ticks and the runs they request, until the outbox is drained; returns runs."""
    sensor = build_achievement_events_sensor(AchievementSensorSettings(settle_seconds=0))
    cursor, runs = None, 0
    for _ in range(5):
        with dg.build_sensor_context(instance=instance, cursor=cursor,
                                     resources={"app_db": AppDatabase(url=database_url)}) as ctx:
            result = sensor(ctx)
        cursor = result.cursor
        if not result.run_requests:
            return runs
        for request in result.run_requests:
            run = achievements_job.execute_in_process(
                run_config=request.run_config, instance=instance,
                tags={**request.tags, RUN_KEY_TAG: request.run_key},
                resources={"app_db": AppDatabase(url=database_url)})
            assert run.success
            runs += 1
    raise AssertionError("the sensor kept requesting runs")


def test_django_app_end_to_end(django_db: str, database_url: str,
                               dagster_instance: dg.DagsterInstance) -> None:
    from django.db import connections
    from django.utils import timezone

    from recs_pipeline_tests.django_app import models as m

    alias = django_db
    counts = _build_platform(alias)

    # Nightly refresh, as the schedule launches it (the code location's job and resources).
    nightly = defs.resolve_job_def("nightly_recommendations_job").execute_in_process(
        instance=dagster_instance)
    assert nightly.success
    recs = list(m.TournamentRecommendation.objects.using(alias).select_related("tournament"))
    assert recs and {r.tournament.status for r in recs} == {"registration_open"}
    now = timezone.now()
    # Aware datetimes under USE_TZ on both backends (PostgreSQL: timestamptz; SQLite: ISO text
    # that Django reads as UTC): comparing with timezone.now() works.
    assert all(r.generated_at.tzinfo is not None and r.generated_at <= now for r in recs)
    assert m.TeamRecommendation.objects.using(alias).exists()

    # On-demand refreshes: the app creates a request row in the transaction of the change; the
    # sensor batches what is pending into one run, which serves (deletes) every request.
    from django.db import transaction

    requested = [r.user_id for r in recs[:5]]
    with transaction.atomic(using=alias):
        for user_id in requested * 3:
            m.RecommendationRefreshRequest.objects.using(alias).create(user_id=user_id)
    app_db = AppDatabase(url=database_url)
    with dg.build_sensor_context(instance=dagster_instance,
                                 resources={"app_db": app_db}) as context:
        result = user_refresh_request_sensor(context)
    [request] = result.run_requests or []
    assert request.run_config["ops"]["refresh_user_recommendations"]["config"]["user_ids"] == (
        sorted(set(requested)))
    refresh = defs.resolve_job_def("refresh_user_recommendations_job").execute_in_process(
        run_config=request.run_config, instance=dagster_instance, tags=request.tags)
    assert refresh.success
    assert not m.RecommendationRefreshRequest.objects.using(alias).exists()

    # Achievements: every outbox event handled once, each achievement once per user.
    runs = _run_sensor_and_achievements(dagster_instance, database_url)
    assert runs >= 1
    awards = list(m.UserAchievement.objects.using(alias).values_list("user_id", "achievement_id"))
    assert awards and len(awards) == len(set(awards))
    first_team = m.Achievement.objects.using(alias).get(code="first_team")
    assert m.UserAchievement.objects.using(alias).filter(achievement=first_team).count() == 120
    assert m.AppEvent.objects.using(alias).count() == counts["events"]

    # Retention purge: old activities and old processed events go, except events an award
    # still points at (Django's ForeignKey); nothing dangles, so Django's own check passes.
    awarded_events = set(m.UserAchievement.objects.using(alias).exclude(event=None)
                         .values_list("event_id", flat=True))
    cutoff = timezone.now() - timedelta(days=90)
    old_events = set(m.AppEvent.objects.using(alias).filter(created_at__lt=cutoff)
                     .values_list("id", flat=True))
    assert old_events - awarded_events and old_events & awarded_events  # both kinds exist
    purge = defs.resolve_job_def("retention_purge_job").execute_in_process(
        instance=dagster_instance)
    assert purge.success
    assert not m.Activity.objects.using(alias).filter(created_at__lt=cutoff).exists()
    left = set(m.AppEvent.objects.using(alias).filter(created_at__lt=cutoff)
               .values_list("id", flat=True))
    assert left == old_events & awarded_events
    connections[alias].check_constraints()  # what every later Django migration runs


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_django_writes_while_the_nightly_job_publishes(
    django_db: str, database_url: str, dagster_instance: dg.DagsterInstance
) -> None:
    """SQLite with the documented settings (IMMEDIATE transactions, a timeout): app writes
    during a nightly run all succeed."""
    from django.db import connections, transaction
    from django.utils import timezone

    from recs_pipeline_tests.django_app import models as m

    alias = django_db
    _build_platform(alias)
    users = list(m.User.objects.using(alias).order_by("id")[:50])
    errors: list[str] = []
    written = [0]
    done = threading.Event()

    def app_writes() -> None:
        try:
            while not done.is_set() or written[0] < 300:
                user = users[written[0] % len(users)]
                try:
                    with transaction.atomic(using=alias):
                        m.Activity.objects.using(alias).create(
                            user=user, activity_type="login", created_at=timezone.now())
                        m.AppEvent.objects.using(alias).create(
                            event_type="login", user=user, created_at=timezone.now())
                    written[0] += 1
                except Exception as exc:  # counted: the assertion is that there are none
                    errors.append(f"{type(exc).__name__}: {exc}")
                    if len(errors) > 20:
                        return
        finally:
            connections[alias].close()

    writer = threading.Thread(target=app_writes)
    writer.start()
    try:
        nightly = defs.resolve_job_def("nightly_recommendations_job").execute_in_process(
            instance=dagster_instance)
    finally:
        done.set()
        writer.join(timeout=120)
    assert nightly.success
    assert not errors, errors[:3]
    assert written[0] >= 300

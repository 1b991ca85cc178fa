"""The schema `init-db` creates equals the contract (checked by reflection on both backends)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from recs_pipeline import schema
from recs_pipeline.bootstrap import DEFAULT_ACHIEVEMENTS, init_app_database

# The contract's tables and columns, written out independently of schema.py:
# (column, generic type, nullable).
CONTRACT: dict[str, list[tuple[str, type, bool]]] = {
    "users": [("id", sa.Integer, False), ("username", sa.String, False),
              ("email", sa.String, False), ("region", sa.String, False),
              ("is_active", sa.Boolean, False), ("date_joined", sa.DateTime, False),
              ("last_login", sa.DateTime, True)],
    "games": [("id", sa.Integer, False), ("slug", sa.String, False), ("name", sa.String, False)],
    "game_profiles": [("id", sa.Integer, False), ("user_id", sa.Integer, False),
                      ("game_id", sa.Integer, False), ("skill_rating", sa.Integer, False),
                      ("created_at", sa.DateTime, False)],
    "profile_completeness": [("user_id", sa.Integer, False), ("percentage", sa.Integer, False),
                             ("updated_at", sa.DateTime, False)],
    "tournaments": [("id", sa.Integer, False), ("name", sa.String, False),
                    ("game_id", sa.Integer, False), ("region", sa.String, False),
                    ("skill_min", sa.Integer, True), ("skill_max", sa.Integer, True),
                    ("max_participants", sa.Integer, False), ("status", sa.String, False),
                    ("registration_closes_at", sa.DateTime, False),
                    ("starts_at", sa.DateTime, False), ("completed_at", sa.DateTime, True),
                    ("created_at", sa.DateTime, False)],
    "tournament_participants": [("id", sa.Integer, False), ("tournament_id", sa.Integer, False),
                                ("user_id", sa.Integer, False), ("team_id", sa.Integer, True),
                                ("registered_at", sa.DateTime, False),
                                ("placement", sa.Integer, True)],
    "teams": [("id", sa.Integer, False), ("name", sa.String, False),
              ("game_id", sa.Integer, False), ("region", sa.String, False),
              ("captain_id", sa.Integer, False), ("max_members", sa.Integer, False),
              ("is_recruiting", sa.Boolean, False), ("created_at", sa.DateTime, False)],
    "team_members": [("id", sa.Integer, False), ("team_id", sa.Integer, False),
                     ("user_id", sa.Integer, False), ("joined_at", sa.DateTime, False),
                     ("left_at", sa.DateTime, True)],
    "activities": [("id", sa.Integer, False), ("user_id", sa.Integer, False),
                   ("activity_type", sa.String, False), ("object_type", sa.String, True),
                   ("object_id", sa.Integer, True), ("created_at", sa.DateTime, False),
                   ("metadata", sa.Text, True)],
    "achievements": [("id", sa.Integer, False), ("code", sa.String, False),
                     ("name", sa.String, False), ("description", sa.Text, False),
                     ("event_type", sa.String, False), ("metric", sa.String, False),
                     ("threshold", sa.Integer, False), ("points", sa.Integer, False),
                     ("is_active", sa.Boolean, False)],
    "user_achievements": [("id", sa.Integer, False), ("user_id", sa.Integer, False),
                          ("achievement_id", sa.Integer, False),
                          ("awarded_at", sa.DateTime, False), ("event_id", sa.Integer, True)],
    "app_events": [("id", sa.Integer, False), ("event_type", sa.String, False),
                   ("user_id", sa.Integer, True), ("payload", sa.Text, True),
                   ("created_at", sa.DateTime, False)],
}

STRING_LENGTHS = {
    ("users", "username"): 150, ("users", "email"): 254, ("users", "region"): 16,
    ("games", "slug"): 50, ("games", "name"): 100, ("tournaments", "name"): 200,
    ("tournaments", "region"): 16, ("tournaments", "status"): 20, ("teams", "name"): 100,
    ("teams", "region"): 16, ("activities", "activity_type"): 40,
    ("activities", "object_type"): 40, ("achievements", "code"): 50,
    ("achievements", "name"): 100, ("achievements", "event_type"): 40,
    ("achievements", "metric"): 40, ("app_events", "event_type"): 40,
}

UNIQUE_KEYS = {
    "games": {("slug",)},
    "game_profiles": {("user_id", "game_id")},
    "tournament_participants": {("tournament_id", "user_id")},
    "achievements": {("code",)},
    "user_achievements": {("user_id", "achievement_id")},
}


def _unique_sets(inspector: sa.Inspector, table: str) -> set[tuple[str, ...]]:
    found = {tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)}
    found |= {tuple(i["column_names"]) for i in inspector.get_indexes(table) if i["unique"]}
    return found


@pytest.mark.db
def test_init_db_creates_exactly_the_contract(engine: Engine) -> None:
    inspector = sa.inspect(engine)
    pipeline_owned = {t.name for t in schema.PIPELINE_TABLES}
    app_tables = set(inspector.get_table_names()) - pipeline_owned
    assert app_tables == set(CONTRACT)
    for table, expected in CONTRACT.items():
        columns = inspector.get_columns(table)
        assert [c["name"] for c in columns] == [name for name, _, _ in expected], table
        for column, (name, generic, nullable) in zip(columns, expected, strict=True):
            assert isinstance(column["type"], generic) or (
                generic is sa.Boolean and engine.dialect.name == "sqlite"
            ), (table, name, column["type"])
            assert column["nullable"] == nullable, (table, name)
            if (table, name) in STRING_LENGTHS:
                assert column["type"].length == STRING_LENGTHS[(table, name)], (table, name)
        pk = inspector.get_pk_constraint(table)["constrained_columns"]
        assert pk == (["user_id"] if table == "profile_completeness" else ["id"]), table
        for unique in UNIQUE_KEYS.get(table, set()):
            assert unique in _unique_sets(inspector, table), (table, unique)
    assert any(i["column_names"] == ["created_at"] for i in inspector.get_indexes("activities"))


@pytest.mark.db
def test_output_tables_match_contract(engine: Engine) -> None:
    inspector = sa.inspect(engine)
    for table, item in (("tournament_recommendations", "tournament_id"),
                        ("team_recommendations", "team_id")):
        names = [c["name"] for c in inspector.get_columns(table)]
        assert names == ["user_id", item, "rank", "score", "reason", "model_version",
                         "generated_at"]
        assert inspector.get_pk_constraint(table)["constrained_columns"] == ["user_id", "rank"]
        assert ("user_id", item) in _unique_sets(inspector, table)
        assert any(i["column_names"] == ["user_id"] for i in inspector.get_indexes(table))


@pytest.mark.db
def test_autoincrement_ids_are_assigned_by_the_database(engine: Engine) -> None:
    with engine.begin() as conn:
        first = conn.execute(
            schema.app_events.insert().values(event_type="team_joined", user_id=1,
                                              created_at=sa.func.current_timestamp())
        ).inserted_primary_key[0]
        second = conn.execute(
            schema.app_events.insert().values(event_type="team_joined", user_id=1,
                                              created_at=sa.func.current_timestamp())
        ).inserted_primary_key[0]
    assert second > first >= 1


@pytest.mark.db
def test_init_db_is_idempotent_and_installs_the_catalogue(engine: Engine) -> None:
    assert init_app_database(engine) == 0  # second time: nothing new
    with engine.connect() as conn:
        rows = conn.execute(sa.select(schema.achievements)).mappings().all()
    assert {r["code"] for r in rows} == {a.code for a in DEFAULT_ACHIEVEMENTS}
    assert all(r["metric"] in schema.ACHIEVEMENT_METRICS for r in rows)
    assert all(r["event_type"] in schema.ACHIEVEMENT_EVENT_TYPES for r in rows)

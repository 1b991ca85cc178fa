"""Display names and reasons: untrusted names and regions never reach a reason as they are."""

from __future__ import annotations

import unicodedata

import numpy as np
import pandas as pd
import pytest

from recs_pipeline.compute import names
from recs_pipeline.compute.names import display_name, display_names
from recs_pipeline.compute.scoring import REASON_MAX_CHARS, build_reasons

# What may never appear in a reason or a display name.
FORBIDDEN = set("<>&\"'@`")


def _unsafe(text: str) -> list[str]:
    return [ch for ch in text if ch in FORBIDDEN or unicodedata.category(ch) in ("Cc", "Cf")]


# --- display_name -------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [
    ("Valorant", "Valorant"),
    ("Counter-Strike 2: GO (PC) #1 C++/R6 !?,._", "Counter-Strike 2: GO (PC) #1 C++/R6 !?,._"),
    ("R@cing League <b>", "R cing League"),
    ("Tom Clancy's \"Rainbow\" & Six", "Tom Clancys Rainbow Six"),
    ("<script>alert(1)</script>", "alert(1)"),
    ("Лига Чемпионов", "Лига Чемпионов"),
    ("王者荣耀", "王者荣耀"),
])
def test_display_name_keeps_letters_digits_and_the_allowlist(raw: str, expected: str) -> None:
    assert display_name(raw, max_length=60) == expected


def test_control_characters_are_removed_and_line_breaks_become_spaces() -> None:
    assert display_name("Valo\x00rant\x07\x1b") == "Valorant"
    assert display_name("Rocket\nLeague\t\r2\x85") == "Rocket League 2"


def test_rtl_override_and_zero_width_characters_are_removed() -> None:
    assert display_name("\u202eevil\u202c Game") == "evil Game"
    assert display_name("Val\u200bor\u200dant\ufeff\u2060") == "Valorant"
    assert display_name("\u2067Chess\u2069 \u200e") == "Chess"


def test_compatibility_forms_are_normalised_before_filtering() -> None:
    # fullwidth brackets become `<` / `>` under NFKC, and are then removed like ASCII ones
    fullwidth = "".join(chr(ord(c) + 0xFEE0) for c in "<script>Valorant")
    assert display_name(fullwidth) == "Valorant"
    assert display_name("\ufb01fa\u00a0\uff12\uff14") == "fifa 24"


def test_long_names_are_cut_on_a_word_boundary_with_an_ellipsis() -> None:
    raw = "The Legend of Zelda Breath of the Wild Championship Edition"
    got = display_name(raw, max_length=40)
    assert got is not None and got.endswith("…") and len(got) <= 40
    kept = got[:-1]
    assert raw.startswith(kept) and raw[len(kept)] == " "
    assert display_name("A" * 500) == "A" * 39 + "…"
    huge = display_name("word " * 20_000, max_length=30)
    assert huge is not None and len(huge) <= 30 and huge.endswith("word…")


@pytest.mark.parametrize("raw", [
    None, "", "   ", "!!!", "()-_", "<>&\"'@`", "@@@", "\u200b\u202e\u2060", "\x00\x01", "<b></b>",
    "\u0301\u0301", "\u3164\u3164",
])
def test_nothing_meaningful_left_gives_none(raw: str | None) -> None:
    assert display_name(raw) is None


def test_output_never_holds_unsafe_characters() -> None:
    every_char = "".join(chr(c) for c in range(0x3000) if not 0xD800 <= c <= 0xDFFF)
    for start in range(0, len(every_char), 37):
        got = display_name(every_char[start:start + 37], max_length=200)
        assert got is None or not _unsafe(got)


def test_display_names_sanitises_each_distinct_value_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    real = names.display_name

    def counting(raw: str | None, max_length: int = 40) -> str | None:
        calls.append(raw)
        return real(raw, max_length)

    monkeypatch.setattr(names, "display_name", counting)
    values = pd.Series(["R@cing", None, "Chess", "R@cing", "!!!"] * 1000, dtype=object)
    got = display_names(values)
    assert got.tolist() == ["R cing", None, "Chess", "R cing", None] * 1000
    assert sorted(calls) == ["!!!", "Chess", "R@cing"]


# --- reasons ------------------------------------------------------------------------------------

HOSTILE_REGION = "ASIA <script>alert(1)</script>"


def _teams(game_name: object, region: str) -> pd.DataFrame:
    return pd.DataFrame({"team_id": [7], "game_id": [1], "game_name": [game_name],
                         "region": [region], "members": [3], "max_members": [5],
                         "open_slots": [2]})


def _tournaments(game_name: object, region: str) -> pd.DataFrame:
    return pd.DataFrame({"tournament_id": [5], "game_id": [2], "game_name": [game_name],
                         "region": [region], "registered": [7], "max_participants": [8],
                         "open_slots": [1], "size_class": [0], "start_slot": [3]})


KINDS = np.array(["skill", "affinity", "collaborative", "popularity"])


def test_reasons_use_sanitised_names_and_never_copy_an_unknown_region() -> None:
    got = build_reasons("teams", KINDS, np.zeros(4, dtype=int), np.zeros(4, dtype=int),
                        np.full(4, 1500), _teams("R@cing League <b>", HOSTILE_REGION)).tolist()
    assert got == [
        "R cing League team in your region near your rating (1,500), 2 open spots",
        "R cing League team in your region for a game you play a lot, 2 open spots",
        "Players like you are on this R cing League team in your region, 2 open spots",
        "Active R cing League team in your region, 3/5 members, 2 open spots",
    ]
    got = build_reasons("tournaments", KINDS, np.zeros(4, dtype=int), np.zeros(4, dtype=int),
                        np.full(4, 1500), _tournaments("\u202eChess\u200b", "mars")).tolist()
    assert got == [
        "Chess tournament in your region for your rating (1,500), 1 open spot",
        "Like the Chess tournaments you play: small, weekday evening",
        "Players like you signed up for this Chess tournament, 7/8 registered",
        "Popular Chess tournament in your region, 7/8 registered",
    ]


def test_known_regions_get_pipeline_display_names() -> None:
    for region, label in (("na", "NA"), ("eu", "EU"), ("sa", "SA"), ("asia", "ASIA"),
                          ("oce", "OCE"), ("global", "Global")):
        (got,) = build_reasons("tournaments", np.array(["popularity"]), np.zeros(1, dtype=int),
                               np.zeros(1, dtype=int), np.zeros(1),
                               _tournaments("Chess", region)).tolist()
        assert got == f"Popular {label} Chess tournament, 7/8 registered"


def test_a_name_with_nothing_meaningful_falls_back_to_pipeline_wording() -> None:
    (got,) = build_reasons("teams", np.array(["popularity"]), np.zeros(1, dtype=int),
                           np.zeros(1, dtype=int), np.zeros(1), _teams("<>@@!!", "eu")).tolist()
    assert got == "Active EU game 1 team, 3/5 members, 2 open spots"


def test_a_rating_outside_the_contract_is_never_shown() -> None:
    ratings = np.array([-5, 5001, 0, 5000, -(2**31)])
    got = build_reasons("teams", np.array(["skill"] * 5), np.zeros(5, dtype=int),
                        np.zeros(5, dtype=int), ratings, _teams("Chess", "eu")).tolist()
    assert got == [
        "EU Chess team near your rating, 2 open spots",
        "EU Chess team near your rating, 2 open spots",
        "EU Chess team near your rating (0), 2 open spots",
        "EU Chess team near your rating (5,000), 2 open spots",
        "EU Chess team near your rating, 2 open spots",
    ]
    (got_t,) = build_reasons("tournaments", np.array(["skill"]), np.zeros(1, dtype=int),
                             np.zeros(1, dtype=int), np.array([np.nan]),
                             _tournaments("Chess", "na")).tolist()
    assert got_t == "NA Chess tournament for your rating, 1 open spot"


def test_reasons_from_hostile_names_are_bounded_and_safe() -> None:
    hostile = ["x" * 300, "a@b.co <img src=x onerror=alert(1)>", "\x00" * 50 + "Game\u202e",
               "Grand " * 60, None, "'\"`&"]
    items = pd.concat([_teams(n, r) for n in hostile for r in ("eu", HOSTILE_REGION)],
                      ignore_index=True)
    n = len(items)
    idx = np.repeat(np.arange(n), len(KINDS))
    reasons = build_reasons("teams", np.tile(KINDS, n), idx, np.zeros(len(idx), dtype=int),
                            np.full(len(idx), 1200), items)
    for reason in reasons.tolist():
        assert 1 <= len(reason) <= REASON_MAX_CHARS
        assert not _unsafe(reason), reason
        assert "script" not in reason.lower() and "onerror" not in reason

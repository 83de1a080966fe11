"""Tests for pipeline.pairing: the translations are found, and nothing else."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.feeds import parse
from pipeline.fetch import Fetched
from pipeline.models import Pairing, Post
from pipeline.pairing import (
    CONTENT_FLOOR,
    CONTENT_FULL,
    MIN_CONFIDENCE,
    SUPPORT,
    Overrides,
    alternates_in,
    assess,
    confidence,
    describe,
    pair,
    pair_archive,
)
from pipeline.postindex import PostIndex
from pipeline.store import Store
from tests.conftest import Buzz
from tests.helpers import ROOT, eval_set, make_post

NOW = datetime(2026, 11, 26, tzinfo=UTC)


def _demo(lang: str, name: str) -> list[Post]:
    body = (ROOT / "demo" / "feeds" / name).read_bytes()
    posts, _ = parse(Fetched(body, "application/rss+xml"), name, lang, NOW)
    return posts


def _eval_set() -> tuple[list[Post], list[Post], set[tuple[str, str]]]:
    raw, posts = eval_set()
    truth = {
        (posts[item["translation_of"]].guid, posts[item["id"]].guid)
        for item in raw
        if item["translation_of"]
    }
    english = [post for post in posts.values() if post.lang == "en"]
    french = [post for post in posts.values() if post.lang == "fr"]
    return english, french, truth


def test_demo_translations_are_all_paired_and_the_untranslated_post_is_alone() -> None:
    """All 13 demo pairs are found (two use another image file); the EN-only post stays alone."""
    english = _demo("en", "it-buzz-en.xml")
    french = _demo("fr", "le-buzz-it-fr.xml")
    pairs, alone = pair(english, french)
    found = {(p.first.guid.rsplit("=", 1)[1], p.second.guid.rsplit("=", 1)[1]) for p in pairs}
    assert found == {
        ("4401", "4406"),
        ("4377", "4384"),
        ("4352", "4359"),
        ("4331", "4338"),
        ("4305", "4314"),
        ("4282", "4290"),
        ("4263", "4266"),
        ("4244", "4251"),
        ("4226", "4229"),
        ("4190", "4197"),
        ("4171", "4174"),
        ("4152", "4158"),
        ("4127", "4135"),
    }
    assert [post.guid for post in alone] == ["https://blog.example.com/?p=4213"]


def test_without_any_hreflang_the_evidence_still_pairs_95_percent_and_none_wrong() -> None:
    """On the labelled set with every page's hreflang ignored: ≥ 95 % of the pairs, no wrong
    pair."""
    english, french, truth = _eval_set()
    pairs, _ = pair(english, french, {})
    found = {(p.first.guid, p.second.guid) for p in pairs}
    assert len(found & truth) >= 0.95 * len(truth)
    assert found <= truth


def _couples(*ids: str) -> tuple[list[Post], list[Post]]:
    """The labelled set's posts of these ids: the English ones, the French ones."""
    _, posts = eval_set()
    chosen = [posts[i] for i in ids]
    return [p for p in chosen if p.lang == "en"], [p for p in chosen if p.lang == "fr"]


def test_one_author_one_stock_photo_one_day_is_never_a_pair_on_its_own() -> None:
    """The labelled set's couples of different posts that share author, image file and day
    (at least 8) all stay below the threshold; those whose translations are not in the set
    stay alone."""
    raw, posts = eval_set()
    truth = {(item["translation_of"], item["id"]) for item in raw if item["translation_of"]}
    couples = [
        (a, b)
        for a in raw
        for b in raw
        if a["lang"] == "en" and b["lang"] == "fr" and (a["id"], b["id"]) not in truth
        and a["author"] == b["author"] and a["image"] == b["image"]
        and abs(posts[a["id"]].published - posts[b["id"]].published) <= timedelta(days=2)
    ]  # fmt: skip
    assert len(couples) >= 8
    translated = {i for pair_ in truth for i in pair_}
    for a, b in couples:
        en, fr = posts[a["id"]], posts[b["id"]]
        assert confidence(en, fr) < MIN_CONFIDENCE, (a["id"], b["id"])
        if a["id"] not in translated and b["id"] not in translated:
            assert pair([en], [fr]) == ([], [en, fr])


def test_posts_sharing_a_stock_photo_each_pair_with_their_own_translation() -> None:
    """Two posts of one author with one image, published the same day in both languages,
    pair by what they say, even where the wrong couple was published closer together; a
    third post with that image stays alone."""
    for ids, expected in (
        (("en-finops-4", "en-finops-6", "fr-finops-4", "fr-finops-6"),
         {("en-finops-4", "fr-finops-4"), ("en-finops-6", "fr-finops-6")}),
        (("en-phish-4", "en-phish-6", "fr-phish-4", "fr-phish-6"),
         {("en-phish-4", "fr-phish-4"), ("en-phish-6", "fr-phish-6")}),
        (("en-m365-3", "fr-m365-3", "fr-m365-only-1"), {("en-m365-3", "fr-m365-3")}),
        (("en-desk-3", "en-desk-only-1", "fr-desk-3"), {("en-desk-3", "fr-desk-3")}),
    ):  # fmt: skip
        english, french = _couples(*ids)
        _, posts = eval_set()
        name = {post.guid: i for i, post in posts.items()}
        pairs, _ = pair(english, french, {})
        assert {(name[p.first.guid], name[p.second.guid]) for p in pairs} == expected


def test_image_dates_and_author_only_support_a_pair_the_content_makes() -> None:
    """Same author, same image file, same minute and the same paragraphs and list: below the
    threshold while the texts share nothing; paired once they share their numbers and
    names."""
    image = "https://blog.example.com/wp-content/uploads/2026/11/stock-laptop.jpg"
    english = (
        "<p>Our technicians replaced 140 laptops for Groupe Beaulieu in October, each one set up "
        "with Windows Autopilot.</p><ul><li>Enrolment in Intune</li><li>Keys kept by BitLocker"
        "</li><li>Profiles from Autopilot</li></ul><p>Every desk now runs Windows 11.</p>"
    )
    unrelated = (
        "<p>Notre équipe déménage au 21e étage la semaine prochaine.</p>"
        "<ul><li>Boîtes</li><li>Clés</li><li>Stationnement</li></ul>"
        "<p>Le café sera offert lundi matin.</p>"
    )
    translated = (
        "<p>Nos techniciens ont remplacé 140 portables chez Groupe Beaulieu en octobre, chacun "
        "configuré avec Windows Autopilot.</p><ul><li>Inscription à Intune</li><li>Clés "
        "conservées par BitLocker</li><li>Profils d’Autopilot</li></ul><p>Chaque poste "
        "fonctionne maintenant sous Windows 11.</p>"
    )
    a = make_post("a", "en", "A fleet refresh", image=image, author="Kevin O’Brien",
                  published=NOW, content_html=english)  # fmt: skip
    b = make_post("b", "fr", "Un déménagement", image=image, author="Kevin O’Brien",
                  published=NOW, content_html=unrelated)  # fmt: skip
    assert (1 - SUPPORT) * CONTENT_FLOOR / CONTENT_FULL < MIN_CONFIDENCE  # the most without support
    score, evidence = assess(a, b)
    assert (evidence.same_image, evidence.same_author, evidence.hours_apart) == (True, True, 0)
    assert evidence.structure == "p li×3 p"
    assert evidence.content < CONTENT_FLOOR
    assert score < MIN_CONFIDENCE
    c = make_post("c", "fr", "Un parc renouvelé", image=image, author="Kevin O’Brien",
                  published=NOW, content_html=translated)  # fmt: skip
    score, evidence = assess(a, c)
    assert score >= MIN_CONFIDENCE
    assert evidence.numbers == ("11", "140")
    assert {"Groupe", "Beaulieu", "Intune", "BitLocker", "Autopilot", "Windows"} <= set(
        evidence.names
    )


def test_a_translation_with_its_paragraphs_merged_or_its_list_undone_still_pairs() -> None:
    """A French version whose translator merged two paragraphs, or wrote the list as
    paragraphs, agrees with the original as much as the faithful one does."""
    _, posts = eval_set()
    en, fr = posts["en-ransom-1"], posts["fr-ransom-1"]
    merged = replace(fr, content_html=fr.content_html.replace("</p><p>", " ", 1))
    no_list = replace(
        fr,
        content_html=fr.content_html.replace("<ul>", "").replace("</ul>", "")
        .replace("<li>", "<p>").replace("</li>", "</p>"),
    )  # fmt: skip
    faithful = assess(en, fr)[1].content
    for variant in (merged, no_list):
        score, evidence = assess(en, variant)
        assert evidence.structure == ""
        assert evidence.content >= faithful
        assert score >= MIN_CONFIDENCE


def test_the_evidence_says_what_made_the_pair() -> None:
    """A pair from content lists the shared numbers and names, the structure and what
    supports it; a pair from hreflang says so."""
    raw, posts = eval_set()
    en, fr = posts["en-partners-3"], posts["fr-partners-3"]
    score, evidence = assess(en, fr)
    lines = describe(Pairing(score, evidence))
    assert lines[0] == f"paired: the two texts agree, confidence {score:.2f}"
    assert "numbers 18, 200, 2022, 27001, 93" in lines[1]
    assert "names Example, Fortinet, IEC, Inc, ISO, Montréal, Québec;" in lines[1]
    assert lines[-1] == "  supporting: same image, published 23 h apart, same author"
    alternates = {item["url"]: item["hreflang"] for item in raw if item["hreflang"]}
    score, evidence = assess(en, fr, alternates)
    assert (score, evidence.basis) == (1.0, "hreflang")
    assert describe(Pairing(score, evidence))[0] == (
        "paired: the two pages name each other (hreflang), confidence 1.00"
    )


def test_pairs_keep_their_evidence_in_the_store(tmp_path: Path) -> None:
    """A pair found is stored with its evidence, read back as `edition.json` shows it; a pair
    stored before evidence was recorded says so."""
    store = Store(tmp_path / "state.sqlite")
    english, french = _couples("en-partners-3", "fr-partners-3")
    store.save_posts([*english, *french], set(), NOW)
    index = PostIndex(store)
    pairs, _ = pair(english, french, {})
    index.save_pairs(pairs, checked=[*english, *french], source="auto")
    stored = index.translations().pairing(french[0].guid)
    assert stored is not None
    assert stored.confidence == pairs[0].confidence
    assert stored.evidence.brief() == pairs[0].evidence.brief()  # as edition.json shows it
    assert "Montréal" in stored.evidence.names
    store.db.execute("UPDATE translations SET evidence = NULL")
    old = index.translations().pairing(english[0].guid)
    assert old is not None
    assert describe(old) == [
        f"paired: paired before buzz recorded its evidence, confidence {old.confidence:.2f}"
    ]


def test_edition_json_and_explain_show_what_made_each_pair(buzz: Buzz, demo: Path) -> None:
    """Every pair story of the demo edition records its confidence and evidence in
    edition.json, and `buzz explain` prints them."""
    assert buzz("fetch").returncode == 0
    assert buzz("build").returncode == 0
    [folder] = (demo / "var" / "out" / "editions").iterdir()
    stories = json.loads((folder / "edition.json").read_text())["stories"]
    pairs = [story for story in stories if "en" in story and "fr" in story]
    assert len(pairs) == 4
    for story in pairs:
        assert story["pair"]["confidence"] >= MIN_CONFIDENCE
        assert story["pair"]["evidence"]["basis"] == "content"
        assert story["pair"]["evidence"]["content"] >= CONTENT_FLOOR
        assert story["pair"]["evidence"]["shared"]["numbers"]
    result = buzz("explain")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("paired: the two texts agree, confidence") == 4
    iso = next(story for story in pairs if "27001" in story["en"]["title"])
    numbers = ", ".join(iso["pair"]["evidence"]["shared"]["numbers"])
    assert f"numbers {numbers};" in result.stdout


def test_hreflang_settles_a_pair_and_rules_out_the_others() -> None:
    """A page that names its translation decides; one that names another post excludes."""
    a = make_post("a", "en", "Alpha", published=NOW)
    b = make_post("b", "fr", "Bêta", published=NOW + timedelta(days=30))
    c = make_post("c", "fr", "Alpha", published=NOW, image=None)
    alternates = {a.url: {"fr": b.url}}
    assert confidence(a, b, alternates) == 1.0
    assert confidence(a, c, alternates) == 0.0
    assert [(p.first, p.second) for p in pair_archive([a], [b, c], alternates)] == [(a, b)]


def test_unrelated_posts_published_together_are_not_paired() -> None:
    """Closeness in time alone is not enough evidence."""
    a = make_post("a", "en", "Ransomware in 2026", image="https://b.example/r.jpg", published=NOW)
    b = make_post("b", "fr", "Le Wi-Fi 7 arrive", image="https://b.example/w.jpg", published=NOW)
    assert confidence(a, b) < MIN_CONFIDENCE
    assert pair([a], [b]) == ([], [a, b])


def test_same_image_with_language_or_size_suffix_counts_as_same_image() -> None:
    """`chat-fr-1024x576.jpg` is a copy of `chat.jpg`."""
    a = make_post("a", "en", "Chat 2026", image="https://b.example/2026/11/chat.jpg", published=NOW)
    b = make_post(
        "b",
        "fr",
        "Clavardage 2026",
        image="https://b.example/2026/11/chat-fr-1024x576.jpg",
        published=NOW + timedelta(hours=5),
    )
    assert confidence(a, b) >= MIN_CONFIDENCE


def test_marketing_decisions_override_the_evidence() -> None:
    """A forced pair is made whatever the evidence, and says so; a broken one never."""
    english, french, truth = _eval_set()
    a, b = next((x, y) for x in english for y in french if (x.guid, y.guid) in truth)
    stranger = next(y for y in french if y.guid != b.guid)
    pairs, _ = pair([a], [b, stranger], {}, Overrides(broken=frozenset({(a.guid, b.guid)})))
    assert all(p.second != b for p in pairs)
    pairs, _ = pair([a], [b, stranger], {}, Overrides(forced=frozenset({(a.guid, stranger.guid)})))
    assert [(p.first, p.second, p.evidence.basis) for p in pairs] == [(a, stranger, "marketing")]


def test_alternates_are_read_from_the_page_head() -> None:
    """`<link rel="alternate" hreflang>` in the head, region subtags folded; body links ignored."""
    page = (
        '<html><head><link rel="alternate" hreflang="fr-CA" href="https://blog.example.com/fr/a/#x">'
        '<link rel="alternate" hreflang="en" href="https://blog.example.com/a/">'
        '<link rel="alternate" hreflang="x-default" href="https://blog.example.com/">'
        '<link rel="stylesheet" href="s.css"></head><body>'
        '<link rel="alternate" hreflang="de" href="https://blog.example.com/de/a/"></body></html>'
    )
    assert alternates_in(page) == {
        "fr": "https://blog.example.com/fr/a/",
        "en": "https://blog.example.com/a/",
    }


def test_archives_are_paired_within_time_windows() -> None:
    """A large archive pairs the same as the whole; posts months apart are never compared."""
    english, french, _ = _eval_set()
    whole, _ = pair(english, french, {})
    windowed = pair_archive(english, french, {})
    assert {(p.first.guid, p.second.guid) for p in windowed} == {
        (p.first.guid, p.second.guid) for p in whole
    }


def test_archive_pairing_obeys_marketing_over_hreflang_and_time() -> None:
    """In `pair_archive` too: a broken pair stays broken even when a page names it; a forced
    pair is made even 30 days apart."""
    a = make_post("a", "en", "Alpha", published=NOW)
    b = make_post("b", "fr", "Alpha", published=NOW + timedelta(hours=1))
    far = make_post("z", "fr", "Zêta", published=NOW + timedelta(days=30))
    alternates = {a.url: {"fr": b.url}}
    broken = Overrides(broken=frozenset({(a.guid, b.guid)}))
    assert pair_archive([a], [b], alternates, broken) == []
    forced = Overrides(forced=frozenset({(a.guid, far.guid)}))
    assert [(p.first, p.second) for p in pair_archive([a], [b, far], alternates, forced)] == [
        (a, far)
    ]

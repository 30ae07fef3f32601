"""Issue 13 review L5: the supervisor's URL scrubbing is linear and sees a bounded message.

At 43df08f ``describe()`` ran a regex that rescans a run of scheme characters from every ``\\b``
in it (quadratic: 2.2 s for 32,000 characters in the review) over the whole ``str(exc)``, and cut
the message to MAX_CAUSE_CHARS only afterwards. The cost is asserted by counting what the scrubber
reads, not by timing.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyreg import supervisor
from keyreg.supervisor import MAX_CAUSE_CHARS, SCRUB_WINDOW, describe, scrub_urls

SECRETS = ("hunter2", "SECRETAPIKEY", "tok3n")
URL = "https://operator:hunter2@rpc.example.org:8545/v3/SECRETAPIKEY?token=tok3n"


class CountingStr(str):
    """A str that counts the characters handed out by find() and indexing (what the scrubber reads)."""

    reads = 0

    def find(self, sub: str, start: int = 0, *args: int) -> int:  # type: ignore[override]
        j = super().find(sub, start, *args)
        CountingStr.reads += (len(self) if j < 0 else j + len(sub)) - start
        return j

    def __getitem__(self, key):  # type: ignore[no-untyped-def]
        item = super().__getitem__(key)
        CountingStr.reads += len(item)
        return item


@pytest.mark.parametrize(
    "hostile",
    [
        "a" * 32_000,  # a run of scheme characters: each \\b of it rescanned the rest (the review)
        ("ab+" * 11_000)[:32_000],
        ("x://" * 8_000)[:32_000],  # as many '://' as fit
        (URL + " ") * 400,
    ],
)
def test_describe_reads_a_bounded_prefix_of_a_32kb_message(monkeypatch: pytest.MonkeyPatch, hostile: str) -> None:
    seen: list[int] = []
    real = supervisor.scrub_urls

    def counting(text: str, cut: bool = False) -> str:
        seen.append(len(text))
        return real(text, cut)

    monkeypatch.setattr(supervisor, "scrub_urls", counting)
    text = describe(ValueError(hostile))
    assert seen
    assert max(seen) <= SCRUB_WINDOW  # 43df08f: the regex read all 32,000 characters, quadratically
    assert len(text) <= len("ValueError: ") + MAX_CAUSE_CHARS + 3
    for secret in SECRETS:
        assert secret not in text


@pytest.mark.parametrize("text", ["a" * 32_000, ("ab+" * 11_000)[:32_000], ("x://" * 8_000)[:32_000],
                                  ("1a://" * 7_000)[:32_000], (URL + " ") * 400])  # fmt: skip
def test_scrubbing_is_linear(text: str) -> None:
    """Characters read by scrub_urls on its worst inputs: a small multiple of the length."""
    CountingStr.reads = 0
    scrub_urls(CountingStr(text))
    assert CountingStr.reads <= 4 * len(text) + 64, CountingStr.reads


_OLD_URL_RE = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*)://([^\s/?#@'\"]*@)?([^\s/?#'\"]*)[^\s'\"]*")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(
                [URL, "postgresql://keyreg:pw@db:5432/x", "http://h/p?q", "://", " ", "'", '"', "@", "/", "9"]
            ),
            st.text(alphabet="ab:/@?# .'\"", max_size=12),
        ),
        max_size=12,
    )
)
def test_scrubbing_removes_what_the_old_pattern_removed(parts: list[str]) -> None:
    """Whatever the old regex cut (user info, path, query of a URL after a word boundary), the
    linear scrubber cuts too: no character the old scrub removed survives as a secret."""
    text = "".join(parts)
    scrubbed = scrub_urls(text)
    for secret in SECRETS:
        assert secret not in scrubbed
    for m in _OLD_URL_RE.finditer(text):
        userinfo = m.group(2)
        if userinfo and len(userinfo) > 1:
            assert f"{m.group(1)}://{userinfo}" not in scrubbed


def test_a_url_cut_by_the_window_shows_no_part_of_its_user_info() -> None:
    long_user = "u" * (2 * SCRUB_WINDOW)
    text = describe(RuntimeError(f"{'z' * 100} https://{long_user}:hunter2@host/path"))
    assert "uuu" not in text
    assert "https://..." in text

"""The one folder walk (``_discover``): what is checked, unreadable or skipped, and why.

The surfaces that use it (``safeclip scan``, ``scan-corpus``, evaluation datasets) are held
to the same answer on the same folder in tests/unit/images/test_discover_surfaces.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from safeclip_guardrail.errors import ConfigurationError
from safeclip_guardrail.images.discover import (
    HIDDEN,
    LINKED_FOLDER,
    NOT_REGULAR,
    Discovery,
    discover_images,
)
from tests._corpus import every_entry, png

FILES = ["gun/a.png", "gun/away.png", "gun/broken.heic", "gun/leak.png", "gun/loop",
         "gun/sub/b.jpg", "gun/upload", "neutral/c.png", "neutral/inside.png", "outdir"]
"""Every file a verdict is reported for, in walk order (sorted paths)."""
NOT_READ = {"gun/away.png", "gun/leak.png", "gun/loop", "outdir"}
SKIPPED = {".cache": HIDDEN, "gun/.hidden.png": HIDDEN, "gun/linkdir": LINKED_FOLDER,
           "gun/notes.txt": "not an image", "neutral/empty": "empty file",
           "neutral/fifo": NOT_REGULAR, "neutral/gone.png": NOT_REGULAR}


def _rel(found: Discovery, root: Path) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """(files in order, {unreadable: error}, {skipped: reason}), relative to ``root``."""
    def rel(p: Path) -> str:
        return p.relative_to(root).as_posix()

    return ([rel(f.path) for f in found.files], {rel(f.path): f.error for f in found.unreadable},
            {rel(s.path): s.reason for s in found.skipped})


def test_every_entry_lands_in_one_place(tmp_path: Path) -> None:
    data = every_entry(tmp_path)
    found = discover_images([data])
    files, unreadable, skipped = _rel(found, data)
    assert files == FILES
    assert set(unreadable) == NOT_READ and skipped == SKIPPED
    assert [p.name for p in found.images] == ["a.png", "broken.heic", "b.jpg", "upload",
                                              "c.png", "inside.png"]
    # out of the root: one message whether the target is a picture, missing, or a folder
    root = str(data)
    outside = {unreadable[n].replace(str(data / n), "X") for n in ("gun/away.png",
                                                                    "gun/leak.png", "outdir")}
    assert outside == {f"X is outside the scan root {root}; not read (name the file itself "
                       "to check it)"}
    assert unreadable["gun/loop"].startswith(f"cannot open {data / 'gun' / 'loop'} (")


def test_a_wider_root_follows_links_into_it_and_a_named_file_is_always_checked(
        tmp_path: Path) -> None:
    data = every_entry(tmp_path)
    found = discover_images([data], root=tmp_path)
    files, unreadable, skipped = _rel(found, data)
    assert set(unreadable) == {"gun/loop"}  # leak.png is read now; away.png leads nowhere
    assert "gun/leak.png" in files and skipped["gun/away.png"] == NOT_REGULAR
    assert skipped["outdir"] == LINKED_FOLDER
    with pytest.raises(ConfigurationError, match="is outside the scan root"):
        discover_images([data], root=tmp_path / "outside")
    notes = data / "gun" / "notes.txt"  # named directly: the caller asked for it
    twice = discover_images([notes, data / "gun", notes])
    assert [f.path for f in twice.files].count(notes) == 1
    assert twice.files[0].path == notes and not twice.files[0].error


def test_the_named_folder_may_be_hidden_and_only_what_is_below_counts(tmp_path: Path) -> None:
    hidden = tmp_path / ".uploads"
    (hidden / ".git").mkdir(parents=True)
    (hidden / ".git" / "x.png").write_bytes(png(0))
    (hidden / "y.png").write_bytes(png(1))
    found = discover_images([hidden])
    assert found.images == [hidden / "y.png"]
    assert [(s.path.name, s.reason) for s in found.skipped] == [(".git", HIDDEN)]  # not entered

"""The backup of the previous identity: every `*.pep-previous` (identity folders, markers,
Parsec state) set aside, restored and discarded by one object, each move a rename followed by
an fsync of the directories of both names, and every operation safe to run again after a
power cut between two of its moves."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pep_agent.gateway.backup import Backup, aside
from pep_agent.settings.paths import Paths
from pep_agent.settings.profiles import get_profile
from pep_agent.system import fsutil

LMP = get_profile("lmp")


class PowerCut(BaseException):
    """The process ends here (raised from inside a move)."""


def _gateway(root: Path) -> tuple[Backup, dict[Path, dict[str, bytes]]]:
    """A provisioned gateway with Parsec state and a verified marker; what each place holds."""
    backup = Backup(Paths(root), LMP)
    mcc, edge_gw_config = backup.identity
    files = {
        mcc / "WORKING/item": b"old credentials",
        mcc / "BACKUP/item": b"old credentials",
        edge_gw_config / "identity.json": b'{"serialNumber": "SN-OLD"}',
        backup.parsec_state / "tpm-state": b"old TPM state",
        backup.markers[0]: b"SN-OLD\n",
        backup.markers[1]: b"SN-OLD\n",
    }
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return backup, {place: _content(place) for place in backup.places}


def _content(place: Path) -> dict[str, bytes]:
    """The files at or below place, by relative path."""
    if place.is_file():
        return {"": place.read_bytes()}
    return {str(p.relative_to(place)): p.read_bytes() for p in sorted(place.rglob("*"))
            if p.is_file()}


def _everything(backup: Backup) -> list[Path]:
    return [*backup.markers, backup.parsec_state, *backup.identity]


def _leftovers(backup: Backup) -> None:
    """What a failed run leaves in the places: a new store, a new identity.json."""
    mcc, edge_gw_config = backup.identity
    for path in (mcc / "WORKING/new", edge_gw_config / "identity.json",
                 backup.parsec_state / "new-state"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"from the failed run")


@pytest.fixture
def moves(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Path]]:
    """Renames and directory fsyncs, in the order they happen."""
    seen: list[tuple[str, Path]] = []
    real_rename, real_fsync = os.rename, fsutil.fsync_dir

    def rename(src: str | Path, dst: str | Path) -> None:
        real_rename(src, dst)
        seen.append(("rename", Path(src)))
        seen.append(("to", Path(dst)))

    def fsync_dir(path: Path) -> None:
        real_fsync(path)
        seen.append(("fsync", Path(path)))

    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(fsutil, "fsync_dir", fsync_dir)
    return seen


def _cut_after(monkeypatch: pytest.MonkeyPatch, renames: int) -> None:
    """A power cut right after the given number of durable renames."""
    real = fsutil.durable_rename
    done = [0]

    def rename(src: Path, dst: Path) -> None:
        if done[0] == renames:
            raise PowerCut
        real(src, dst)
        done[0] += 1

    monkeypatch.setattr(fsutil, "durable_rename", rename)


def test_set_aside_moves_each_place_beside_itself(tmp_path: Path) -> None:
    backup, before = _gateway(tmp_path)
    moved = backup.set_aside(_everything(backup))
    assert moved == _everything(backup)
    for place in backup.places:
        assert not place.exists()
        assert _content(aside(place)) == before[place]
    assert backup.held() == list(backup.places)
    assert sorted(p.name for p in tmp_path.rglob("*.pep-previous")) == sorted(
        p.name + ".pep-previous" for p in backup.places)


def test_an_absent_place_is_not_set_aside(tmp_path: Path) -> None:
    backup, _ = _gateway(tmp_path)
    backup.markers[1].unlink()  # never verified
    assert backup.set_aside(backup.markers) == [backup.markers[0]]
    assert not aside(backup.markers[1]).exists()


def test_restore_puts_everything_back_over_a_failed_runs_leftovers(tmp_path: Path) -> None:
    backup, before = _gateway(tmp_path)
    backup.set_aside(_everything(backup))
    _leftovers(backup)
    restored = backup.restore()
    # The provisioned marker, which vouches for the rest, comes back last.
    assert restored[-1] == backup.markers[0]
    assert sorted(restored) == sorted(backup.places)
    assert {place: _content(place) for place in backup.places} == before
    assert backup.held() == []


def test_discard_removes_every_backup_and_nothing_else(tmp_path: Path) -> None:
    backup, _ = _gateway(tmp_path)
    backup.set_aside(_everything(backup))
    _leftovers(backup)
    backup.discard()
    assert backup.held() == [] and not list(tmp_path.rglob("*.pep-previous"))
    assert (backup.identity[1] / "identity.json").read_bytes() == b"from the failed run"


@pytest.mark.parametrize("cut", [1, 2, 3, 4])
def test_set_aside_again_after_a_power_cut_between_two_moves(tmp_path: Path, cut: int,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    backup, before = _gateway(tmp_path)
    with monkeypatch.context() as m:
        _cut_after(m, cut)
        with pytest.raises(PowerCut):
            backup.set_aside(_everything(backup))
    last = _everything(backup)[cut - 1]
    if last in (backup.parsec_state, backup.identity[0]):
        # Parsec and FCC write their stores in place: a new one where the last item moved.
        (last / "new-store").mkdir(parents=True)
    backup.set_aside(_everything(backup))
    for place in backup.places:
        assert not place.exists(), place
        assert _content(aside(place)) == before[place], place


@pytest.mark.parametrize("cut", [1, 2, 4])
def test_restore_again_after_a_power_cut_between_two_moves(tmp_path: Path, cut: int,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    backup, before = _gateway(tmp_path)
    backup.set_aside(_everything(backup))
    _leftovers(backup)
    with monkeypatch.context() as m:
        _cut_after(m, cut)
        with pytest.raises(PowerCut):
            backup.restore()
    assert len(backup.held()) == len(backup.places) - cut
    backup.restore()
    assert {place: _content(place) for place in backup.places} == before
    assert backup.held() == []


def test_a_restore_cut_between_removing_the_leftover_and_the_rename(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backup, before = _gateway(tmp_path)
    backup.set_aside(_everything(backup))
    _leftovers(backup)
    with monkeypatch.context() as m:
        _cut_after(m, 0)
        with pytest.raises(PowerCut):
            backup.restore()
    mcc = backup.identity[0]
    assert not mcc.exists() and _content(aside(mcc)) == before[mcc]
    backup.restore()
    assert {place: _content(place) for place in backup.places} == before


def test_what_a_provisioned_gateway_holds_aside_is_stale(tmp_path: Path) -> None:
    """A marker in place vouches for what is in place: anything aside is older (a version
    that kept `provisioned.pep-previous` after a later provision), and never comes back
    over it."""
    backup, before = _gateway(tmp_path)
    stale = aside(backup.parsec_state) / "tpm-state"
    stale.parent.mkdir()
    stale.write_bytes(b"an older TPM state")
    aside(backup.markers[0]).write_bytes(b"SN-OLDER\n")
    backup.set_aside([*backup.markers, backup.parsec_state])
    _leftovers(backup)
    backup.restore()
    assert _content(backup.parsec_state) == before[backup.parsec_state]
    assert backup.markers[0].read_bytes() == b"SN-OLD\n"


def _durable(seen: list[tuple[str, Path]]) -> list[tuple[Path, Path]]:
    """(src, dst) of each rename followed, before the next rename, by an fsync of both
    names' directories."""
    found = []
    for i, (kind, src) in enumerate(seen):
        if kind != "rename":
            continue
        dst = seen[i + 1][1]
        later = []
        for kind2, path in seen[i + 2:]:
            if kind2 == "rename":
                break
            later.append(path)
        if src.parent in later and dst.parent in later:
            found.append((src, dst))
    return found


def test_every_move_is_made_durable(tmp_path: Path, moves: list[tuple[str, Path]]) -> None:
    backup, _ = _gateway(tmp_path)
    backup.set_aside(_everything(backup))
    set_aside = {(place, aside(place)) for place in backup.places}
    assert set(_durable(moves)) == set_aside
    assert [m for m in moves if m[0] == "rename"] == [("rename", p) for p in
                                                       _everything(backup)]
    moves.clear()
    _leftovers(backup)
    backup.restore()
    assert set(_durable(moves)) == {(a, p) for p, a in set_aside}
    assert len([m for m in moves if m[0] == "rename"]) == len(set_aside)


def test_a_discard_is_made_durable(tmp_path: Path, moves: list[tuple[str, Path]]) -> None:
    """A discarded backup that came back after a power cut would be taken for the previous
    identity by a later run."""
    backup, _ = _gateway(tmp_path)
    backup.set_aside(_everything(backup))
    moves.clear()
    backup.discard()
    assert {p for kind, p in moves if kind == "fsync"} == {p.parent for p in backup.places}

"""Fetching (URL and path), checksum, validation and the stratified seeded split."""

from __future__ import annotations

import functools
import http.server
import threading

import pandas as pd
import pytest

from gs_ds_env.data import DataError, fetch, split_and_stage


@pytest.fixture
def http_server(tmp_path, titanic_csv):
    """A real HTTP server on 127.0.0.1 serving the data set and a tampered copy."""
    (tmp_path / "www").mkdir()
    (tmp_path / "www/titanic.csv").write_bytes(titanic_csv.read_bytes())
    (tmp_path / "www/tampered.csv").write_bytes(titanic_csv.read_bytes().replace(b"Braund", b"Brauns"))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_split_is_stratified_seeded_and_reused(scratch_settings):
    staged = split_and_stage(scratch_settings)
    assert staged.rows == {"train": 712, "validation": 179}
    train = pd.read_csv(staged.channels["train"] / "train.csv")
    validation = pd.read_csv(staged.channels["validation"] / "validation.csv")
    assert set(train.PassengerId).isdisjoint(validation.PassengerId)
    assert abs(train.Survived.mean() - validation.Survived.mean()) < 0.01
    mtime = (staged.channels["train"] / "train.csv").stat().st_mtime
    again = split_and_stage(scratch_settings)
    assert (again.channels["train"] / "train.csv").stat().st_mtime == mtime
    other = split_and_stage(scratch_settings.replace(seed=7))
    assert not pd.read_csv(other.channels["validation"] / "validation.csv").equals(validation)


def test_download_verifies_checksum_and_keeps_nothing_bad(scratch_settings, http_server, tmp_path):
    with pytest.raises(DataError, match="has sha256 .* expected 4a437fde"):
        fetch(scratch_settings, f"{http_server}/tampered.csv")
    cached = scratch_settings.data_dir / "raw/titanic.csv"
    assert not cached.exists() and not cached.with_suffix(".part").exists(), "a bad download must leave nothing"
    with pytest.raises(DataError, match="cannot download"):
        fetch(scratch_settings, f"{http_server}/missing.csv")
    path, origin = fetch(scratch_settings, f"{http_server}/titanic.csv")
    assert path == cached and origin.endswith("/titanic.csv") and path.read_bytes()[:11] == b"PassengerId"


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "sha256"),
        (b"a,b\n1,2\n", "sha256"),
    ],
)
def test_bad_local_files_are_refused(scratch_settings, tmp_path, content, message):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(content)
    with pytest.raises(DataError, match=message):
        fetch(scratch_settings, str(bad))


def test_wrong_columns_and_empty_refused_even_with_matching_checksum(scratch_settings, tmp_path):
    from gs_ds_env.data import load

    (tmp_path / "cols.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="lacks the Titanic columns"):
        load(tmp_path / "cols.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="not a readable CSV"):
        load(tmp_path / "empty.csv")


def test_missing_path_is_named(scratch_settings):
    with pytest.raises(DataError, match="/no/such.csv does not exist"):
        fetch(scratch_settings, "/no/such.csv")

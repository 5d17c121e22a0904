"""Fetching (URL and path), checksum, validation and the stratified seeded split."""

from __future__ import annotations

import functools
import http.server
import shutil
import socket
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import one_line_refusal, run_inv

from gs_ds_env import data
from gs_ds_env.data import DataError, fetch, split_and_stage
from gs_ds_env.data import titanic as titanic_data


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


# ---- data: verified by content, bad labels refused ----------------------------------------------------------
def test_a_changed_staged_file_is_staged_again_not_trained_on(scratch_settings, capsys):
    first = data.split_and_stage(scratch_settings)
    train_csv = first.channels["train"] / "train.csv"
    original = train_csv.read_bytes()
    train_csv.write_text("".join(train_csv.read_text().splitlines(keepends=True)[:41]))  # truncated to 40 rows
    again = data.split_and_stage(scratch_settings)
    assert "is not the file staged from the verified source" in capsys.readouterr().out
    assert train_csv.read_bytes() == original
    assert again.rows == first.rows == {"train": 712, "validation": 179}
    assert (
        again.channel_sha256
        == first.channel_sha256
        == {channel: data.sha256_of(folder / f"{channel}.csv") for channel, folder in first.channels.items()}
    )
    frame = pd.read_csv(first.channels["validation"] / "validation.csv")  # flipped labels: also caught
    frame["Survived"] = 1 - frame["Survived"]
    frame.to_csv(first.channels["validation"] / "validation.csv", index=False)
    assert data.split_and_stage(scratch_settings).channel_sha256 == first.channel_sha256


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f: f.assign(Survived=f.Survived.astype(float).where(f.index > 3)), "4 rows have no Survived label"),
        (lambda f: f.assign(Survived=f.Survived.where(f.index != 0, 2)), "Survived must be 0 or 1, found 2"),
        (lambda f: f.assign(Survived=0), "1 classes: need at least 50 rows and both classes"),
    ],
)
def test_bad_labels_are_one_line_before_training(tmp_path, titanic_csv, change, message):
    broken = tmp_path / "broken.csv"
    change(pd.read_csv(titanic_csv)).to_csv(broken, index=False)
    with pytest.raises(data.DataError, match=message):
        data.load(broken)


def test_a_trickling_download_stops_at_its_deadline_and_leaves_nothing(scratch_settings, monkeypatch):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def trickle():
        connection, _ = server.accept()
        connection.recv(4096)
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 61194\r\n\r\n")
        try:
            for _ in range(60):
                connection.sendall(b"x")
                time.sleep(0.2)
        except OSError:
            pass
        connection.close()

    threading.Thread(target=trickle, daemon=True).start()
    monkeypatch.setattr(titanic_data, "DOWNLOAD_DEADLINE", 1.5)
    url = f"http://127.0.0.1:{server.getsockname()[1]}/titanic.csv"
    with pytest.raises(data.DataError, match=r"took longer than 1.5 s: stopped; set TITANIC_CSV"):
        data.fetch(scratch_settings, url)
    server.close()
    assert not list((scratch_settings.data_dir / "raw").glob("*")), "no partial file may stay"


def _stage_in_child(settings, queue):
    try:
        queue.put(data.split_and_stage(settings).channel_sha256)
    except Exception as error:  # reported to the parent, which fails the test with it
        queue.put(repr(error))


def test_concurrent_stagings_of_one_key_take_turns(scratch_settings):
    import multiprocessing

    context = multiprocessing.get_context("fork")  # the children keep the redirected data_dir
    queue = context.Queue()
    children = [context.Process(target=_stage_in_child, args=(scratch_settings, queue)) for _ in range(4)]
    for child in children:
        child.start()
    results = [queue.get(timeout=120) for _ in children]
    for child in children:
        child.join()
    assert all(isinstance(result, dict) for result in results), results
    assert all(result == results[0] for result in results)
    staged = scratch_settings.data_dir / "staged"
    assert not list(staged.glob("*.tmp")), "no half-written staging folder may stay"


def test_an_extra_file_in_a_staged_channel_is_refused_and_kept(copy, titanic_csv):
    staged = run_inv(copy, "data", TITANIC_CSV=str(titanic_csv))
    assert staged.returncode == 0, staged.stderr
    train = Path(staged.stdout.split("train: ", 1)[1].split(" (", 1)[0])
    validation = Path(staged.stdout.split("validation: ", 1)[1].split(" (", 1)[0])
    leaked = train / "validation-copy.csv"
    shutil.copy(validation / "validation.csv", leaked)  # the leak that raised the validation AUC to 0.97
    try:
        refused = run_inv(copy, "data", TITANIC_CSV=str(titanic_csv))
        one_line_refusal(refused, "validation-copy.csv besides train.csv", "the job would train on it too")
        assert leaked.is_file()  # nothing lost: it may be someone's
        plan = run_inv(copy, "deploy", "--dry-run", TITANIC_CSV=str(titanic_csv))
        assert plan.returncode == 0  # a plan stages nothing, so it says nothing yet
    finally:
        leaked.unlink()
    assert run_inv(copy, "data", TITANIC_CSV=str(titanic_csv)).returncode == 0

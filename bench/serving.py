"""`make bench` (serving): the theme image's `serve` beside AWS's bring-your-own-container stack (nginx + gunicorn
sync workers + Flask, bench/serving_anchor/), both on the same image, lock and Titanic model, in one run:
cold start (container start -> first 200 from /ping; beside loading the model by hand in the same container),
single-row latency p50/p99, throughput at concurrency 1 and 8, and the size each stack adds. Goals: p99 <= the
anchor's p50, throughput >= 1.5x, cold start <= 2 s and <= 1.0x loading the model by hand (the Titanic model and
a user's scikit-learn script in AWS's convention).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from environments import copy_project  # noqa: E402  (bench/, this script's folder)

import docker  # noqa: E402
from gs_ds_env import data, image  # noqa: E402
from gs_ds_env.settings import load_settings  # noqa: E402

SERVING_DISTRIBUTIONS = ("gunicorn", "uvicorn", "uvicorn-worker", "starlette", "httptools", "uvloop")
REQUESTS = 300
COLD_STARTS = 5


def train_model(image_ref: str, channels: dict[str, str], scratch: Path) -> Path:
    volumes = [f"{Path(str(p).removeprefix('file://'))}:/opt/ml/input/data/{c}:ro" for c, p in channels.items()]
    model = scratch / "model"
    model.mkdir()
    args = ["docker", "run", "--rm", "-v", f"{model}:/opt/ml/model", "-v", f"{scratch / 'output'}:/opt/ml/output"]
    for volume in volumes:
        args += ["-v", volume]
    subprocess.run([*args, image_ref, "train"], check=True, capture_output=True)
    return model


def build_anchor(client, image_ref: str) -> str:
    tag = "gs-ds-env-bench-anchor:" + image_ref.rsplit(":", 1)[-1]
    for _ in client.api.build(
        path=str(REPO / "bench/serving_anchor"), tag=tag, buildargs={"IMAGE": image_ref}, rm=True, decode=True
    ):
        if "error" in _:
            raise RuntimeError(f"anchor build failed: {_['error']}")
    return tag


def start(client, image_ref: str, command: list[str], model: Path, environment: dict | None = None):
    started = time.perf_counter()
    container = client.containers.run(
        image_ref, command, detach=True, ports={"8080/tcp": ("127.0.0.1", None)},
        volumes={str(model): {"bind": "/opt/ml/model", "mode": "ro"}}, environment=environment or {},
    )  # fmt: skip
    port = None
    while time.perf_counter() - started < 120:
        if port is None:
            container.reload()
            bindings = container.attrs["NetworkSettings"]["Ports"].get("8080/tcp")
            port = int(bindings[0]["HostPort"]) if bindings else None
        if port:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1) as response:
                    if response.status == 200:
                        return container, port, time.perf_counter() - started
            except OSError:
                pass
        time.sleep(0.02)
    container.remove(force=True)
    raise RuntimeError(f"{image_ref} never answered /ping")


def latencies(port: int, body: bytes, count: int) -> list[float]:
    session, out = requests.Session(), []
    for _ in range(count):
        started = time.perf_counter()
        response = session.post(f"http://127.0.0.1:{port}/invocations", data=body, headers={"Content-Type": "text/csv"})
        out.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return out


def throughput(port: int, body: bytes, concurrency: int, count: int) -> float:
    def worker(n: int) -> None:
        latencies(port, body, n)

    threads = [threading.Thread(target=worker, args=(count // concurrency,)) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return (count // concurrency) * concurrency / (time.perf_counter() - started)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1)]


def measure(client, name: str, image_ref: str, command: list[str], model: Path, body: bytes, cold=None) -> dict:
    cold = cold or cold_start(client, image_ref, command, model)
    container, port, _ = start(client, image_ref, command, model)
    try:
        latencies(port, body, 20)  # warm-up
        single = latencies(port, body, REQUESTS)
        result = {
            "stack": name,
            "cold_start_s": cold,
            "p50_ms": round(statistics.median(single), 2),
            "p99_ms": round(percentile(single, 99), 2),
            "rps_c1": round(throughput(port, body, 1, REQUESTS), 1),
            "rps_c8": round(throughput(port, body, 8, 2 * REQUESTS), 1),
        }
    finally:
        container.remove(force=True)
    return result


# Loading the model by hand in the same container: what `serve` must at least do before it can answer. The steps
# are timed inside the process; the rest of the container's life (docker's start, the interpreter) is the remainder.
BY_HAND = """
import time
started = time.perf_counter()
import io, json, sys
import joblib, pandas
imported = time.perf_counter()
model = joblib.load("/opt/ml/model/model.joblib")
loaded = time.perf_counter()
model.predict_proba(pandas.read_csv(io.StringIO(sys.argv[1])))
predicted = time.perf_counter()
print(json.dumps({"imports": imported - started, "load": loaded - imported, "predict": predicted - loaded}))
"""

# The same for a user's scikit-learn script in AWS's convention (its model_fn, the toolkit's default CSV decoding
# and predict): import the script, call model_fn, predict one header-less row.
BY_HAND_USER = """
import time
started = time.perf_counter()
import importlib.util, json, sys
import numpy
spec = importlib.util.spec_from_file_location("user_script", "/opt/ml/model/code/" + sys.argv[2])
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)
imported = time.perf_counter()
model = script.model_fn("/opt/ml/model")
loaded = time.perf_counter()
model.predict(numpy.loadtxt([sys.argv[1]], delimiter=",", ndmin=2))
predicted = time.perf_counter()
print(json.dumps({"imports": imported - started, "load": loaded - imported, "predict": predicted - loaded}))
"""


def by_hand_once(client, image_ref: str, model: Path, program: str, *args: str) -> dict:
    """`docker run` of a process that imports, loads the model and predicts one row: its steps and its total."""
    started = time.perf_counter()
    out = client.containers.run(
        image_ref, ["python", "-c", program, *args], remove=True,
        volumes={str(model): {"bind": "/opt/ml/model", "mode": "ro"}},
    )  # fmt: skip
    steps = json.loads(out.decode().strip().splitlines()[-1])
    return {"total": time.perf_counter() - started, **steps}


def cold_vs_hand(client, image_ref: str, model: Path, environment: dict | None, program: str, *args: str):
    """Medians of COLD_STARTS pairs, taken in turn (by hand, then `serve` from container start to the first 200
    from /ping), so a slower minute of the machine weighs on both sides alike."""
    colds, hands = [], []
    for _ in range(COLD_STARTS):
        hands.append(by_hand_once(client, image_ref, model, program, *args))
        container, _, took = start(client, image_ref, ["serve"], model, environment)
        colds.append(took)
        container.remove(force=True)
    median = sorted(hands, key=lambda run: run["total"])[len(hands) // 2]
    median["docker_and_interpreter"] = median["total"] - median["imports"] - median["load"] - median["predict"]
    return round(statistics.median(colds), 2), {key: round(value, 2) for key, value in median.items()}


USER_SCRIPT = REPO / "tests/aws_style/sklearn_iris/train.py"  # AWS's scikit-learn example, as a user brings it
IRIS = """
import numpy
from sklearn.datasets import load_iris
iris = load_iris()
numpy.savetxt("/data/iris.csv", numpy.column_stack([iris.target, iris.data]), delimiter=",", fmt="%g")
"""


def train_user_model(image_ref: str, scratch: Path) -> Path:
    """The user's script trained in the image on header-less iris rows (label first), its model folder laid out as
    the SDK repacks it for AWS's scikit-learn container: model.joblib and code/<script>."""
    folder, iris = scratch / "user-model", scratch / "iris"
    (folder / "code").mkdir(parents=True)
    iris.mkdir()
    shutil.copy2(USER_SCRIPT, folder / "code" / USER_SCRIPT.name)
    run = ["docker", "run", "--rm", "-v", f"{iris}:/data", "-v", f"{folder}:/opt/ml/model", image_ref]
    subprocess.run([*run, "python", "-c", IRIS], check=True, capture_output=True)
    script = f"/opt/ml/model/code/{USER_SCRIPT.name}"
    subprocess.run(
        [*run, "python", script, "--train", "/data", "--model-dir", "/opt/ml/model"], check=True, capture_output=True
    )
    return folder


def cold_start(client, image_ref: str, command: list[str], model: Path, environment: dict | None = None) -> float:
    """Median of COLD_STARTS: container start -> first 200 from /ping."""
    seconds = []
    for _ in range(COLD_STARTS):
        container, _, took = start(client, image_ref, command, model, environment)
        seconds.append(took)
        container.remove(force=True)
    return round(statistics.median(seconds), 2)


def breakdown(label: str, cold: float, hand: dict) -> str:
    server = cold - hand["total"] + hand["predict"]  # gunicorn, the workers' fork and the first /ping
    return (
        f"  {label}: cold start {cold} s vs by hand {hand['total']} s = {cold / hand['total']:.2f}x (goal <= 1.0);"
        f" by hand: docker and the interpreter {hand['docker_and_interpreter']} s, imports {hand['imports']} s,"
        f" model load {hand['load']} s, one prediction {hand['predict']} s; serve's server, fork and first /ping"
        f" {server:+.2f} s beyond the load"
    )


def serving_packages_mb(client, image_ref: str) -> float:
    probe = (
        "import importlib.metadata as m, os\n"
        f"names = {SERVING_DISTRIBUTIONS!r}\n"
        "print(sum(os.path.getsize(f.locate()) for n in names for f in (m.distribution(n).files or []) if os.path.isfile(f.locate())))"
    )
    return int(client.containers.run(image_ref, ["python", "-c", probe], remove=True)) / 1e6


def main() -> None:
    if os.environ.get("BENCH_ONLY") and "serving" not in os.environ["BENCH_ONLY"].split():
        return
    client = docker.from_env()
    source, _ = data.fetch(load_settings())  # TITANIC_CSV, or the checkout's verified download (the user's cache)
    with tempfile.TemporaryDirectory(prefix="gs-bench-serving-") as tmp:
        scratch = Path(tmp)
        os.environ["WORKING_DIR"] = str(scratch / "work")  # staged channels land here, not in the checkout
        repo = copy_project(scratch / "repo", "bin", "docker", "training", "themes", ".dockerignore", ".env.example")
        settings = load_settings(repo_root=repo, theme="tabular", py=os.environ.get("BENCH_PY") or None)
        built = image.build(settings)
        staged = data.split_and_stage(settings, str(source))
        model = train_model(built.local_ref, staged.channels, scratch)
        anchor = build_anchor(client, built.local_ref)
        validation = Path(str(staged.channels["validation"]).removeprefix("file://")) / "validation.csv"
        header, first = validation.read_text().splitlines()[:2]
        body = f"{header}\n{first}\n".encode()
        cold, hand = cold_vs_hand(client, built.local_ref, model, None, BY_HAND, body.decode())
        user_model = train_user_model(built.local_ref, scratch)
        row = "5.1,3.5,1.4,0.2"  # header-less, as the SDK's CSVSerializer sends it
        user_cold, user_hand = cold_vs_hand(
            client, built.local_ref, user_model, {"SAGEMAKER_PROGRAM": USER_SCRIPT.name}, BY_HAND_USER, row,
            USER_SCRIPT.name,
        )  # fmt: skip
        ours = measure(client, "serve (gunicorn + uvicorn + Starlette)", built.local_ref, ["serve"], model, body, cold)
        theirs = measure(client, "anchor (nginx + gunicorn sync + Flask)", anchor, ["/opt/anchor/serve"], model, body)
    ours["size_added_mb"] = round(serving_packages_mb(client, built.local_ref), 1)
    theirs["size_added_mb"] = round(
        (client.images.get(anchor).attrs["Size"] - client.images.get(built.local_ref).attrs["Size"]) / 1e6, 1
    )
    print(f"serving, the Titanic model, {REQUESTS} single-row CSV requests ({os.cpu_count()} CPUs, 1 worker per CPU):")
    columns = ["cold_start_s", "p50_ms", "p99_ms", "rps_c1", "rps_c8", "size_added_mb"]
    print(f"  {'':42}" + "".join(f"{c:>14}" for c in columns))
    for row in (ours, theirs):
        print(f"  {row['stack']:42}" + "".join(f"{row[c]:>14}" for c in columns))
    print(
        f"  ratios: p99 / anchor p50 = {ours['p99_ms'] / theirs['p50_ms']:.2f} (goal <= 1); "
        f"throughput c1 {ours['rps_c1'] / theirs['rps_c1']:.2f}x, c8 {ours['rps_c8'] / theirs['rps_c8']:.2f}x (goal >= 1.5x); "
        f"cold start {ours['cold_start_s']} s (goal <= 2 s)"
    )
    print(f"  cold start vs loading the model by hand in the same container (medians of {COLD_STARTS}, in turn):")
    print(breakdown("the Titanic model", ours["cold_start_s"], hand))
    print(breakdown(f"a user's scikit-learn script ({USER_SCRIPT.parent.name}, AWS's model_fn)", user_cold, user_hand))
    print(
        json.dumps(
            {
                "serving": [ours, theirs],
                "by_hand": hand,
                "user_script": {"cold_start_s": user_cold, "by_hand": user_hand},
            }
        )
    )
    client.images.remove(anchor, force=True)


if __name__ == "__main__":
    main()

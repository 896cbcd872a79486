"""Actor failures on an in-process local Ray (bound to 127.0.0.1). RayExecutor's tensor-parallel groups: a group
whose rank dies mid-call fails that call at once (not when the survivor's collective times out) and is rebuilt as
a whole; a group that fails to form is tried again; a group no node can hold is a clear error; check_fits rejects
pools no node can hold. Whole jobs: a killed top-prior rank, or a killed upsampler actor (restarted by Ray), costs
a retry, never a sample or a different code."""
from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import pytest

from jukebox_dist.errors import InputError
from jukebox_dist.runtime.actors import PoolSpec, check_fits
from tests.runtime.group_worker import AllReduceRank
from tests.runtime.tp_job import write_tp_job

REPO = Path(__file__).resolve().parents[2]


def _node(cpus: float, gpus: float = 0.0, alive: bool = True) -> dict:
    return {"Alive": alive, "Resources": {"CPU": cpus, **({"GPU": gpus} if gpus else {})}}


def test_check_fits_rejects_a_group_larger_than_every_node():
    pools = {"top": PoolSpec(object, {}, cpus=4, gpus=1, group=8, field="resources.top_prior"),
             "decoder": PoolSpec(object, {}, cpus=1, field="resources.decoders")}
    with pytest.raises(InputError) as err:
        check_fits(pools, [_node(64, 4), _node(64, 4), _node(96, 8, alive=False)])
    msg = str(err.value)
    assert "resources.top_prior" in msg and "8 ranks" in msg and "8 GPUs" in msg
    assert "largest: 4 GPUs" in msg and "2 node(s) alive" in msg and "lower tensor_parallel" in msg
    check_fits(pools, [_node(64, 4), _node(32, 8)])  # one node with 8 GPUs and 32 CPUs holds it


def test_check_fits_names_a_plain_pool_and_counts_cpus():
    with pytest.raises(InputError, match=r"resources\.upsamplers\.middle: needs 2 GPUs and 1 CPUs per actor"):
        check_fits({"middle": PoolSpec(object, {}, cpus=1, gpus=2, field="resources.upsamplers.middle")}, [_node(8, 1)])
    with pytest.raises(InputError, match=r"resources\.top_prior: .* 2 ranks .* 6 CPUs on one node"):
        check_fits({"top": PoolSpec(object, {}, cpus=3, group=2, field="resources.top_prior")}, [_node(4), _node(4)])
    check_fits({"top": PoolSpec(object, {}, cpus=2, group=2)}, [_node(4)])


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=4, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    try:
        yield ray
    finally:
        ray.shutdown()  # stops only the local instance this process started


def _wait_one(ex, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = ex.wait(1.0)
        if got:
            assert len(got) == 1
            return got[0]
    raise AssertionError("no call finished")


def test_a_dead_rank_fails_the_call_at_once_and_the_group_is_rebuilt(local_ray):
    from jukebox_dist.runtime.actors import RayExecutor

    ex = RayExecutor({"top": PoolSpec(AllReduceRank, {}, cpus=0.5, group=2)})
    h = ex.submit("top", "add", 1)
    handle, (total, pid0), err = _wait_one(ex)
    assert (handle, total, err) == (h, 1 + 2, None)
    old = list(ex.pools["top"].actors[0].handle)

    h = ex.submit("top", "add", 5, 1, 60.0)  # rank 1 sleeps before its all-reduce; rank 0 waits in it
    time.sleep(2.0)
    local_ray.kill(old[1], no_restart=True)
    t0 = time.monotonic()
    handle, value, err = _wait_one(ex)
    assert handle == h and value is None and err is not None
    assert time.monotonic() - t0 < 30, "the executor waited for the surviving rank's collective"
    assert ex.group_restarts == 1 and ex.free_slots("top") == 1
    new = ex.pools["top"].actors[0].handle
    assert all(a._actor_id != b._actor_id for a, b in zip(old, new))
    with pytest.raises(local_ray.exceptions.RayActorError):  # the survivor was stopped with the group
        local_ray.get(old[0].pid.remote(), timeout=30)

    h = ex.submit("top", "add", 10)  # the new group works
    handle, (total, pid), err = _wait_one(ex)
    assert (handle, total, err) == (h, 10 + 11, None) and pid != pid0


def test_a_group_that_fails_to_form_is_tried_again(local_ray, tmp_path):
    from jukebox_dist.runtime.actors import RayExecutor

    marker = tmp_path / "failed-once"
    ex = RayExecutor({"top": PoolSpec(AllReduceRank, {"fail_first_setup": str(marker)}, cpus=0.5, group=2)})
    assert marker.exists()  # the first try failed; the second formed the group
    ex.submit("top", "add", 2)
    assert _wait_one(ex)[1][0] == 2 + 3


def test_a_group_no_node_can_hold_is_a_clear_error(local_ray):
    from jukebox_dist.runtime.actors import RayExecutor

    with pytest.raises(InputError, match=r"no node could host a tensor-parallel group of 2 ranks .* within 2 s "
                                         r"\(resources\.top_prior; all ranks must fit on one node\)"):
        RayExecutor({"top": PoolSpec(AllReduceRank, {}, cpus=3, group=2, field="resources.top_prior")},
                    group_timeout_s=2)


def test_validate_cluster_rejects_a_group_larger_than_any_node(local_ray, tmp_path, capsys):
    """`jukebox-dist validate --cluster` against the connected Ray (4 CPUs, no GPU on this machine)."""
    import yaml

    from jukebox_dist import cli

    data = yaml.safe_load((REPO / "jobs" / "tiny.yaml").read_text())
    data["output"] = str(tmp_path / "out")
    data["songs"] = [dict(s, lyrics="la la") for s in data["songs"] if "lyrics" in s]
    path = tmp_path / "tp.yaml"
    data["resources"]["top_prior"] = {"gpus": 1, "cpus": 1, "tensor_parallel": 2}
    path.write_text(yaml.safe_dump(data))
    assert cli.main(["validate", str(path)]) == 0  # without --cluster: nothing to compare with
    capsys.readouterr()
    assert cli.main(["validate", str(path), "--cluster"]) != 0
    err = capsys.readouterr().err
    assert "resources.top_prior: needs a tensor-parallel group of 2 ranks" in err
    assert "2 GPUs and 2 CPUs on one node" in err and "largest: 0 GPUs" in err and "Traceback" not in err
    data["resources"]["top_prior"] = {"gpus": 0, "cpus": 1, "tensor_parallel": 2}
    path.write_text(yaml.safe_dump(data))
    assert cli.main(["validate", str(path), "--cluster"]) == 0
    assert not (tmp_path / "out").exists()


def test_a_job_survives_a_dead_rank_of_its_tensor_parallel_top_prior(local_ray, tmp_path, caplog):
    """The real TPPriorWorker (tiny model, 2 CPU ranks, DeepSpeed AutoTP): rank 1 is killed once the top level
    has finished a window; the group is rebuilt, the window retried, and every sample ends with the codes of the
    same job without tensor parallelism."""
    pytest.importorskip("deepspeed")
    codes = {}
    for tp in (1, 2):
        path, out = write_tp_job(tmp_path, tp, seconds=0.3)
        if tp == 1:
            codes[tp] = _run(path, out)
            continue
        with _killing(local_ray, out, "tp2", "TPPriorWorker-", "-rank1", level=0, restart=False) as killed:
            with caplog.at_level("WARNING"):
                codes[tp] = _run(path, out)
        assert killed, "rank 1 was never killed: the job ended before a top window was recorded"
        assert "restarting the whole group" in caplog.text and "retrying" in caplog.text
    assert codes[1] == codes[2]


def test_a_job_survives_a_killed_upsampler_actor(local_ray, tmp_path, caplog):
    """The middle upsampler's actor is killed (Ray restarts it) after its first window: the call in flight fails,
    the scheduler retries it on the restarted actor, and the codes equal an in-process run of the same job."""
    path, out = write_tp_job(tmp_path / "killed", 1, seconds=0.3)
    clean_path, clean_out = write_tp_job(tmp_path / "clean", 1, seconds=0.3)
    expected = _run(clean_path, clean_out, executor="local")
    with _killing(local_ray, out, "tp1", "PriorWorker-middle-", "-0", level=1, restart=True) as killed:
        with caplog.at_level("WARNING"):
            got = _run(path, out)
    assert killed, "the middle actor was never killed: the job ended before a middle window was recorded"
    assert "middle.sample failed" in caplog.text and "retrying" in caplog.text
    assert got == expected


def _run(path: Path, out: Path, executor: str = "ray") -> dict[str, tuple]:
    from jukebox_dist.runtime.runner import run_job

    summary = run_job(str(path), executor=executor)
    rows = _rows(out)
    assert summary["failed"] == 0 and len(rows) == 2 and all(r["status"] == "ok" for r in rows)
    return {r["sample_id"]: (r["codes_top"], r["codes_middle"]) for r in rows}


@contextlib.contextmanager
def _killing(ray, out: Path, job: str, prefix: str, suffix: str, *, level: int, restart: bool):
    """While the body runs, kill the actor whose name starts with `prefix` and ends with `suffix` as soon as the
    job's ledger holds a sampled window of `level`; yields the list of killed names."""
    from jukebox_dist.output.store import OutputStore

    killed: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set() and not killed:
            names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)]
            match = [n for n in names if n.startswith(prefix) and n.endswith(suffix)]
            ledger = OutputStore(str(out), job).load_windows() if (out / "ledger").is_dir() else {}
            if match and any(r.level == level and r.worker != "init" for recs in ledger.values() for r in recs):
                ray.kill(ray.get_actor(match[0]), no_restart=not restart)
                killed.append(match[0])
            time.sleep(0.2)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield killed
    finally:
        stop.set()
        thread.join(timeout=10)


def _rows(out: Path) -> list[dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = sorted(out.glob("samples/part-*.parquet"))
    return pa.concat_tables([pq.read_table(p) for p in parts]).to_pylist()

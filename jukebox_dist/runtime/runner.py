"""Run a manifest: plan it, open its output, start the worker pools (Ray or this process), schedule, store."""
from __future__ import annotations

import logging
import os
import socket
from typing import Any

from jukebox_dist import __version__
from jukebox_dist.errors import InputError
from jukebox_dist.job.manifest import Manifest, load_manifest
from jukebox_dist.job.plan import (SampleSpec, check_against_model, load_model_config, load_songs, make_plan,
                                   model_fingerprint)
from jukebox_dist.output.store import OutputStore
from jukebox_dist.runtime.actors import LocalExecutor, PoolSpec, RayExecutor, check_fits
from jukebox_dist.runtime.scheduler import DECODER_POOL, LEVEL_POOLS, Finished, SampleJob, Scheduler, settings_for
from jukebox_dist.runtime.workers import DecoderWorker, PriorWorker, TPPriorWorker

log = logging.getLogger(__name__)


def run_job(path: str, *, executor: str = "ray") -> dict[str, Any]:
    """Everything a manifest asks for that is not in its output folder yet. `executor`: "ray" (the cluster of
    the Ray job this runs in, the manifest's ray.address, or a new local Ray) or "local" (this process)."""
    manifest = load_manifest(path)
    songs = load_songs(manifest)
    config, tokenizer = load_model_config(manifest.model)
    check_against_model(manifest, songs, config, tokenizer)  # every check before any model loads
    tp = manifest.resources.top_prior.tensor_parallel  # check_against_model checked it divides the heads
    if tp > 1 and executor == "local":
        raise InputError(f"{path}: resources.top_prior.tensor_parallel={tp} needs Ray (drop --local)")
    plan = make_plan(manifest, config, tokenizer)
    store = OutputStore(manifest.output, manifest.name)
    model_hash = model_fingerprint(manifest.model)
    store.write_job(manifest.model_dump(mode="json"), model_hash)
    levels = _levels(manifest)
    jobs = [_sample_job(spec, manifest, tokenizer) for spec in plan.samples]
    batch = [manifest.sampling.batch.top, manifest.sampling.batch.middle, manifest.sampling.batch.bottom]
    top_actors = manifest.resources.top_prior.actors
    settings = settings_for(config, levels, batch, max_active=max(4, 2 * batch[0] * top_actors))
    pools = _pools(manifest, levels)
    if executor == "local":
        runner = LocalExecutor(pools)
    else:
        _init_ray(manifest)
        check_cluster(pools)
        runner = RayExecutor(pools)
    temps = manifest.sampling.temperatures()

    def store_finished(done: list[Finished]) -> None:
        rows = [_row(f, manifest, temps, config.sampling_rate, model_hash) for f in done]
        store.write_samples(rows, [f.audio for f in done], config.sampling_rate, manifest.audio_format.value
                            if hasattr(manifest.audio_format, "value") else manifest.audio_format)

    log.info("job %s: %d samples, levels %s, output %s", manifest.name, len(jobs),
             [LEVEL_POOLS[lvl] for lvl in levels], manifest.output)
    summary = Scheduler(jobs, settings, runner, store, store_finished).run()
    # Every sample is finished or failed: one Parquet part per folder instead of one per window batch.
    for folder in ("samples", "ledger"):
        store.compact(folder)
    log.info("listening page: %s", store.write_report())
    summary["output"] = str(manifest.output)
    return summary


def check_manifest_fits(path: str) -> None:
    """`jukebox-dist validate --cluster`: the manifest's pools fit on the nodes of the cluster `run` would use
    (the manifest's ray.address, RAY_ADDRESS, or a local Ray on this machine)."""
    manifest = load_manifest(path)
    _init_ray(manifest)
    check_cluster(_pools(manifest, _levels(manifest)))


def _levels(manifest: Manifest) -> list[int]:
    return [LEVEL_POOLS.index(str(getattr(lvl, "value", lvl))) for lvl in manifest.levels]


def _sample_job(spec: SampleSpec, manifest: Manifest, tokenizer) -> SampleJob:
    ids = tokenizer(spec.artist, list(spec.genres), spec.lyrics)["input_ids"]
    mode = str(getattr(manifest.mode, "value", manifest.mode))
    return SampleJob(spec.sample_id, spec.seed, spec.total_length, tuple(tuple(row[0].tolist()) for row in ids),
                     mode, spec.prime or spec.codes, spec.prime_seconds, spec.take, spec.song_id, spec.artist,
                     tuple(spec.genres), spec.lyrics)


def _pools(manifest: Manifest, levels: list[int]) -> dict[str, PoolSpec]:
    res = manifest.resources
    temps = manifest.sampling.temperatures()
    s = manifest.sampling
    pools = {}
    for lvl in levels:
        r = res.top_prior if lvl == 0 else getattr(res.upsamplers, LEVEL_POOLS[lvl])
        device = "cuda" if r.gpus > 0 else "cpu"
        tp = res.top_prior.tensor_parallel if lvl == 0 else 1
        pools[LEVEL_POOLS[lvl]] = PoolSpec(
            TPPriorWorker if tp > 1 else PriorWorker,
            dict(model=manifest.model, level=lvl, temperature=temps[lvl], top_k=s.top_k, top_p=s.top_p,
                 chunk_size=s.chunk_size, device=device, dtype="bfloat16" if r.gpus > 0 else None,
                 threads=max(1, int(r.cpus))),
            actors=r.actors, cpus=r.cpus, gpus=r.gpus, group=tp,
            field="resources.top_prior" if lvl == 0 else f"resources.upsamplers.{LEVEL_POOLS[lvl]}")
    d = res.decoders
    pools[DECODER_POOL] = PoolSpec(DecoderWorker, dict(model=manifest.model, device="cuda" if d.gpus > 0 else "cpu",
                                                       threads=max(1, int(d.cpus))),
                                   actors=d.actors, cpus=d.cpus, gpus=d.gpus, field="resources.decoders")
    return pools


def check_cluster(pools: dict[str, PoolSpec]) -> None:
    """Before any actor starts: every pool and tensor-parallel group fits on a node of the connected cluster."""
    import ray

    check_fits(pools, ray.nodes(), where="the Ray cluster")


def _init_ray(manifest: Manifest) -> None:
    import ray

    if ray.is_initialized():
        return
    address = manifest.ray.address or os.environ.get("RAY_ADDRESS")
    if address:  # inside `ray job submit`, RAY_ADDRESS names the cluster
        check_reachable(address)
        ray.init(address=address, log_to_driver=True)
        log.info("connected to the Ray cluster at %s", address)
    else:
        ray.init(dashboard_host=manifest.ray.dashboard_host, include_dashboard=False, log_to_driver=True)
        log.info("started a local Ray instance (resources %s)", ray.cluster_resources())


def check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """Fail fast on a cluster address nothing listens on: ray.init would retry for minutes, printing warnings."""
    host_port = address.removeprefix("ray://").rstrip("/")
    host, sep, port = host_port.rpartition(":")
    if not sep or not port.isdigit():  # "auto", "local" and other forms: Ray resolves those itself
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise InputError(f"Ray cluster {address} (ray.address or RAY_ADDRESS): nothing answers there ({exc}); "
                         "expected host:port of a running head (`ray start --head`), or no address for a local "
                         "Ray") from None


def _row(f: Finished, manifest: Manifest, temps: list[float], sample_rate: int,
         model_hash: str) -> dict[str, Any]:
    job = f.job
    spec_codes = {name: f.codes[i] if i < len(f.codes) else [] for i, name in enumerate(LEVEL_POOLS)}
    return {
        "job": manifest.name, "sample_id": job.sample_id, "song_id": job.song_id, "artist": job.artist,
        "genres": list(job.genres), "lyrics": job.lyrics, "seed": job.seed,
        "seconds": job.total_length / sample_rate, "total_length": job.total_length, "sample_rate": sample_rate,
        "mode": job.mode, "model": manifest.model, "model_hash": model_hash, "temperature": temps, "top_k": manifest.sampling.top_k,
        "top_p": manifest.sampling.top_p, "codes_top": spec_codes["top"], "codes_middle": spec_codes["middle"],
        "codes_bottom": spec_codes["bottom"], "status": "ok" if f.error is None else "error", "error": f.error,
        "seconds_top": f.level_seconds.get(0), "seconds_middle": f.level_seconds.get(1),
        "seconds_bottom": f.level_seconds.get(2), "package_version": __version__,
    }

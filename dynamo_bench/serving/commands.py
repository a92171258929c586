"""DeploymentSpec -> command lines. Pure functions: no processes, no file system.

Each backend's worker gets the spec's knobs under that engine's own flag names (checked against
the engines' parsers in tests/unit/test_commands.py):

| knob                   | mocker                    | vllm                      | sglang                   | trtllm                    |
|------------------------|---------------------------|---------------------------|--------------------------|---------------------------|
| tp / pp                | (simulated by tables)     | --tensor/pipeline-parallel-size | --tensor/pipeline-parallel-size | --tensor/pipeline-parallel-size |
| block_size             | --block-size              | --block-size              | --page-size              | --kv-block-size + tokens_per_block |
| max_num_seqs           | --max-num-seqs            | --max-num-seqs            | --max-running-requests   | --max-batch-size          |
| max_num_batched_tokens | --max-num-batched-tokens  | --max-num-batched-tokens  | --max-prefill-tokens     | --max-num-tokens          |
| prefix caching         | --[no-]enable-prefix-caching | --[no-]enable-prefix-caching | --disable-radix-cache | kv_cache_config.enable_block_reuse |
| chunked prefill        | --[no-]enable-chunked-prefill | --[no-]enable-chunked-prefill | --chunked-prefill-size -1 | enable_chunked_prefill |
| disagg role            | --disaggregation-mode     | --disaggregation-mode + --kv-transfer-config | --disaggregation-mode + transfer backend | --disaggregation-mode + cache_transceiver_config |
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

from dynamo_bench.perf.tables import TimingTables
from dynamo_bench.perf.timing import ENGINE_DEFAULTS
from dynamo_bench.serving.model_dir import is_prequantized
from dynamo_bench.specs.deployment import DeploymentSpec, Role, WorkerGroup

#: Environment that keeps a stack on loopback and private (see FIELD-NOTES).
LOOPBACK_ENV = {
    "DYN_TCP_RPC_HOST": "127.0.0.1",
    "DYN_EVENT_PLANE_HOST": "127.0.0.1",
    "DYN_TCP_RESPONSE_STREAM_HOST": "127.0.0.1",
    "DYN_SYSTEM_HOST": "127.0.0.1",
}
TRANSPORT_ARGS = ["--discovery-backend", "file", "--request-plane", "tcp"]

#: The engines' KV-event endpoint as written into worker commands: the wildcard bind of the
#: operator's templates, kept as is in Kubernetes manifests (the pod's Dynamo worker subscribes
#: on 127.0.0.1; `${KV_EVENTS_PORT}` is filled in by whoever renders the command).
KV_EVENTS_PLACEHOLDER = "tcp://*:${KV_EVENTS_PORT}"

#: Dynamo's event plane (KV events, load metrics, sequence tracking) binds its direct-mode ZMQ
#: publishers on 0.0.0.0 whatever DYN_EVENT_PLANE_HOST says (only the advertised address follows
#: it). In broker mode (`DYN_ZMQ_BROKER_URL`) publishers and subscribers *connect* to one
#: XSUB/XPUB proxy instead, so a local stack runs this proxy, bound to loopback. Argument: the
#: file to write the `DYN_ZMQ_BROKER_URL` value to once both sockets are bound.
ZMQ_BROKER_CODE = (
    "import os, sys, zmq\n"
    "ctx = zmq.Context()\n"
    "xsub, xpub = ctx.socket(zmq.XSUB), ctx.socket(zmq.XPUB)\n"
    'a = xsub.bind_to_random_port("tcp://127.0.0.1")\n'
    'b = xpub.bind_to_random_port("tcp://127.0.0.1")\n'
    'with open(sys.argv[1] + ".tmp", "w") as f:\n'
    '    f.write(f"xsub=tcp://127.0.0.1:{a} , xpub=tcp://127.0.0.1:{b}")\n'
    'os.replace(sys.argv[1] + ".tmp", sys.argv[1])\n'
    "zmq.proxy(xsub, xpub)\n"
)


def zmq_broker_argv(url_file: str, python: str = sys.executable) -> list[str]:
    """The loopback event-plane broker of a local stack (see `ZMQ_BROKER_CODE`)."""
    return [python, "-c", ZMQ_BROKER_CODE, url_file]


def local_kv_events_endpoint(backend: str, port: int, ipc_path: str) -> str:
    """Where a local engine publishes its KV events: bound to this machine only where possible.

    vLLM binds an endpoint only if it is a wildcard or `ipc://` (any other `tcp://host:port` makes
    it *connect*, and as Dynamo's subscriber connects too, no event would arrive), so a local
    vLLM worker gets a Unix socket. SGLang's Dynamo subscriber (ai-dynamo 1.6.1,
    dynamo/sglang/publisher.py `kv_event_connect_ip`) reaches a non-wildcard endpoint on the
    machine's outward address and cannot take `ipc://`, so SGLang keeps the wildcard, and `Stack`
    reports that listener. TensorRT-LLM's events go through Dynamo's own publisher.
    """
    if backend == "vllm":
        return f"ipc://{ipc_path}"
    return f"tcp://*:{port}"


def localize_kv_events(argv: list[str], endpoint: str) -> list[str]:
    """`argv` with the KV-event placeholder replaced by a local stack's endpoint."""
    # the placeholder sits inside a JSON string
    text = json.dumps(endpoint)[1:-1]
    return [a.replace(KV_EVENTS_PLACEHOLDER, text) for a in argv]


_VLLM_CONNECTORS = {
    "nixl": {"kv_connector": "NixlConnector"},
    "lmcache": {"kv_connector": "LMCacheConnectorV1"},
    "kvbm": {"kv_connector": "DynamoConnector",
             "kv_connector_module_path": "kvbm.vllm_integration.connector"},
}


@dataclass(frozen=True)
class WorkerCommand:
    """One worker process: its role, index within the role, argv and extra environment."""

    role: Role
    index: int
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    gpus: int = 0

    @property
    def name(self) -> str:
        return f"{self.role}-{self.index}"


def frontend_argv(spec: DeploymentSpec, port: int, python: str = sys.executable) -> list[str]:
    """The `dynamo.frontend` command: HTTP on the spec's host, router mode and KV settings."""
    argv = [python, "-m", "dynamo.frontend", "--http-host", spec.frontend.host,
            "--http-port", str(port), *TRANSPORT_ARGS, "--router-mode", spec.router.mode]
    kv = spec.router.kv
    if kv is not None:
        if kv.overlap_score_credit is not None:
            argv += ["--router-kv-overlap-score-credit", _num(kv.overlap_score_credit)]
        if kv.temperature is not None:
            argv += ["--router-temperature", _num(kv.temperature)]
        if kv.queue_threshold is not None:
            argv += ["--router-queue-threshold", _num(kv.queue_threshold)]
        for flag, value in (("router-kv-events", kv.use_kv_events),
                            ("router-replica-sync", kv.replica_sync),
                            ("router-track-active-blocks", kv.track_active_blocks),
                            ("router-assume-kv-reuse", kv.assume_kv_reuse)):
            if value is not None:
                argv.append(f"--{flag}" if value else f"--no-{flag}")
    return argv


def worker_commands(spec: DeploymentSpec, model_path: str, python: str = sys.executable,
                    tables: Mapping[Role, TimingTables] | None = None) -> list[WorkerCommand]:
    """Every worker process of the deployment, in launch order (prefill before decode).

    `tables` (mocker only) are the timing tables per role: their file and KV capacity are
    passed with `--planner-profile-data` and `--num-gpu-blocks-override`.
    """
    out: list[WorkerCommand] = []
    for role in spec.roles():
        group = spec.workers[role]
        for i in range(group.replicas):
            argv = _BUILDERS[spec.backend](spec, role, group, model_path)
            if spec.backend == "mocker" and tables and role in tables:
                t = tables[role]
                argv += ["--planner-profile-data", str(t.path)]
                if group.num_gpu_blocks is None and t.num_gpu_blocks:
                    argv += ["--num-gpu-blocks-override", str(t.num_gpu_blocks)]
                if group.block_size is None:
                    argv += ["--block-size", str(t.block_size)]
                if role != "agg" and t.kv_transfer_gb_s:
                    argv += ["--kv-transfer-bandwidth", _num(t.kv_transfer_gb_s),
                             "--kv-bytes-per-token", str(t.kv_bytes_per_token)]
            env: dict[str, str] = {}
            if spec.backend == "vllm" and spec.device == "cpu":
                argv += ["--enforce-eager"]
                env = dict(VLLM_CPU_ENV)
            out.append(WorkerCommand(role, i, [python, "-m", f"dynamo.{spec.backend}", *argv,
                                               *group.extra_args], env=env,
                                     gpus=_gpus(spec, group)))
    return out


#: A vLLM CPU worker's environment (FIELD-NOTES "Real vLLM under Dynamo on CPU"): 1 GiB of KV
#: cache, its internal queues on loopback, no core pinning (several engines share the cores),
#: and no hub access (models are local directories).
VLLM_CPU_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_HOST_IP": "127.0.0.1",
                "VLLM_CPU_OMP_THREADS_BIND": "nobind", "HF_HUB_OFFLINE": "1"}


def _gpus(spec: DeploymentSpec, group: WorkerGroup) -> int:
    return 0 if spec.backend == "mocker" or spec.device == "cpu" else group.gpus_per_worker


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _flag(argv: list[str], flag: str, value: object | None) -> None:
    if value is not None:
        argv += [flag, _num(value) if isinstance(value, float) else str(value)]


def _bool_flag(argv: list[str], name: str, value: bool | None) -> None:
    if value is not None:
        argv.append(f"--{name}" if value else f"--no-{name}")


def _mocker(spec: DeploymentSpec, role: Role, g: WorkerGroup, model: str) -> list[str]:
    argv = ["--model-path", model, "--model-name", spec.model_name, *TRANSPORT_ARGS]
    if role != "agg":
        argv += ["--disaggregation-mode", role]
    _flag(argv, "--block-size", g.block_size)
    _flag(argv, "--max-num-seqs", g.max_num_seqs or ENGINE_DEFAULTS["max_num_seqs"])
    _flag(argv, "--max-num-batched-tokens",
          g.max_num_batched_tokens or ENGINE_DEFAULTS["max_num_batched_tokens"])
    _flag(argv, "--max-model-len", g.max_model_len)
    _flag(argv, "--num-gpu-blocks-override", g.num_gpu_blocks)
    _bool_flag(argv, "enable-prefix-caching", g.enable_prefix_caching)
    _bool_flag(argv, "enable-chunked-prefill",
               ENGINE_DEFAULTS["enable_chunked_prefill"] if g.enable_chunked_prefill is None
               else g.enable_chunked_prefill)
    if g.speedup_ratio != 1.0:
        argv += ["--speedup-ratio", _num(g.speedup_ratio)]
    off = g.kv_offload
    if off is not None:
        _flag(argv, "--num-host-blocks", off.host_blocks)
        if off.offload_bandwidth_gb_s is not None:
            bw = _num(off.offload_bandwidth_gb_s)
            argv += ["--host-offload-d2h-bandwidth-gbps", bw,
                     "--host-offload-h2d-bandwidth-gbps", bw]
    return argv


def _vllm_transfer_config(spec: DeploymentSpec, role: Role, g: WorkerGroup) -> dict | None:
    connector = g.kv_connector
    if connector is None:
        connector = "kvbm" if g.kv_offload else ("nixl" if role != "agg" else None)
    if connector in (None, "none"):
        return None
    kv_role = {"agg": "kv_both", "prefill": "kv_producer", "decode": "kv_consumer"}[role]
    if role != "agg" and connector != "nixl":
        # Offload and P/D transfer together go through vLLM's multi-connector.
        return {"kv_connector": "PdConnector", "kv_role": kv_role,
                "kv_connector_extra_config": {"connectors": [
                    {**_VLLM_CONNECTORS[connector], "kv_role": "kv_both"},
                    {**_VLLM_CONNECTORS["nixl"], "kv_role": "kv_both"}]},
                "kv_connector_module_path": "kvbm.vllm_integration.connector"}
    return {**_VLLM_CONNECTORS[connector], "kv_role": kv_role}


def _vllm(spec: DeploymentSpec, role: Role, g: WorkerGroup, model: str) -> list[str]:
    argv = ["--model", model, "--served-model-name", spec.model_name, *TRANSPORT_ARGS,
            "--tensor-parallel-size", str(g.tp), "--pipeline-parallel-size", str(g.pp)]
    if role != "agg":
        argv += ["--disaggregation-mode", role]
    _flag(argv, "--block-size", g.block_size)
    _flag(argv, "--max-num-seqs", g.max_num_seqs)
    _flag(argv, "--max-num-batched-tokens", g.max_num_batched_tokens)
    _flag(argv, "--max-model-len", g.max_model_len)
    _flag(argv, "--gpu-memory-utilization", g.gpu_memory_utilization)
    _flag(argv, "--num-gpu-blocks-override", g.num_gpu_blocks)
    _bool_flag(argv, "enable-prefix-caching", g.enable_prefix_caching)
    _bool_flag(argv, "enable-chunked-prefill", g.enable_chunked_prefill)
    if spec.precision == "fp8":
        # a published fp8 checkpoint carries its quantization config; bf16 weights are
        # quantized at load time
        if not is_prequantized(model):
            argv += ["--quantization", "fp8"]
        argv += ["--kv-cache-dtype", "fp8"]
    transfer = _vllm_transfer_config(spec, role, g)
    if transfer is not None:
        argv += ["--kv-transfer-config", json.dumps(transfer, separators=(",", ":"))]
    if spec.router.mode == "kv" and g.enable_prefix_caching and role != "decode":
        # The KV router needs the engine's cache events; Dynamo forwards them from this socket.
        argv += ["--kv-events-config", json.dumps(
            {"publisher": "zmq", "topic": "kv-events", "endpoint": KV_EVENTS_PLACEHOLDER,
             "enable_kv_cache_events": True}, separators=(",", ":"))]
    return argv


def _sglang(spec: DeploymentSpec, role: Role, g: WorkerGroup, model: str) -> list[str]:
    argv = ["--model-path", model, "--served-model-name", spec.model_name, *TRANSPORT_ARGS,
            # SGLang's long spellings (aliases of --tp-size/--pp-size), which Dynamo's
            # deployment tooling also reads
            "--tensor-parallel-size", str(g.tp), "--pipeline-parallel-size", str(g.pp)]
    if role != "agg":
        backend = g.kv_connector if g.kv_connector not in (None, "none") else "nixl"
        argv += ["--disaggregation-mode", role, "--disaggregation-transfer-backend", backend]
    _flag(argv, "--page-size", g.block_size)
    _flag(argv, "--max-running-requests", g.max_num_seqs)
    _flag(argv, "--max-prefill-tokens", g.max_num_batched_tokens)
    _flag(argv, "--context-length", g.max_model_len)
    _flag(argv, "--mem-fraction-static", g.gpu_memory_utilization)
    if spec.precision == "fp8":
        if not is_prequantized(model):
            argv += ["--quantization", "fp8"]
        argv += ["--kv-cache-dtype", "fp8_e4m3"]
    if not g.enable_prefix_caching:
        argv.append("--disable-radix-cache")
    if g.enable_chunked_prefill is False:
        argv += ["--chunked-prefill-size", "-1"]
    off = g.kv_offload
    if off is not None:
        argv.append("--enable-hierarchical-cache")
        _flag(argv, "--hicache-ratio", off.host_ratio)
        _flag(argv, "--hicache-size", off.host_cache_gb)
    if spec.router.mode == "kv" and g.enable_prefix_caching and role != "decode":
        argv += ["--kv-events-config", json.dumps(
            {"publisher": "zmq", "topic": "kv-events", "endpoint": KV_EVENTS_PLACEHOLDER},
            separators=(",", ":"))]
    return argv


def _trtllm(spec: DeploymentSpec, role: Role, g: WorkerGroup, model: str) -> list[str]:
    argv = ["--model-path", model, "--served-model-name", spec.model_name, *TRANSPORT_ARGS,
            "--tensor-parallel-size", str(g.tp), "--pipeline-parallel-size", str(g.pp),
            "--disaggregation-mode", role]
    _flag(argv, "--kv-block-size", g.block_size)
    _flag(argv, "--max-batch-size", g.max_num_seqs)
    _flag(argv, "--max-num-tokens", g.max_num_batched_tokens)
    _flag(argv, "--max-seq-len", g.max_model_len)
    _flag(argv, "--free-gpu-memory-fraction", g.gpu_memory_utilization)
    engine: list[tuple[str, str]] = [
        ("kv_cache_config.enable_block_reuse", str(g.enable_prefix_caching).lower())]
    if g.block_size is not None:
        engine.append(("kv_cache_config.tokens_per_block", str(g.block_size)))
    if spec.precision == "fp8":
        # TensorRT-LLM takes fp8 weights from the checkpoint itself (a ModelOpt fp8 export);
        # the KV cache dtype is an engine setting
        engine.append(("kv_cache_config.dtype", "fp8"))
    if g.enable_chunked_prefill is not None:
        engine.append(("enable_chunked_prefill", str(g.enable_chunked_prefill).lower()))
    if role != "agg":
        backend = g.kv_connector if g.kv_connector not in (None, "none") else "nixl"
        engine.append(("cache_transceiver_config.backend", backend.upper()))
    if g.kv_offload is not None and g.kv_offload.host_cache_gb is not None:
        engine.append(("kv_cache_config.host_cache_size",
                       str(int(g.kv_offload.host_cache_gb * 1e9))))
    for key, value in engine:
        argv += [f"--trtllm.{key}", value]
    if spec.router.mode == "kv" and g.enable_prefix_caching and role != "decode":
        argv.append("--publish-kv-events")
    return argv


_BUILDERS = {"mocker": _mocker, "vllm": _vllm, "sglang": _sglang, "trtllm": _trtllm}

"""vLLM's half of engine = "vllm": loads one model in vLLM and decodes or samples on request.

compute/engine/vllm_engine.py starts this file as a script with the Python of
vLLM's own environment, which need not have TDS (or TDS's pins) installed, so
it imports only the standard library and vLLM. It speaks JSON lines: the first
line on stdin says what to load (the model and every adapter it will be asked
for), each further line is one batch of prompts, each prompt with its own
SamplingParams keywords (greedy answers: temperature 0; the branching factor's
samples: n, temperature, top_p and a seed); each reply is one line on stdout
with every prompt's n token-id lists. Everything else either process prints
(vLLM logs, its engine process) goes to stderr.
"""

import ctypes
import json
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def end_with_the_run() -> None:
    """Started in a process group of its own: on SIGTERM, or when the run that started it dies however it dies
    (Linux's parent-death signal), end the whole group, vLLM's engine processes included, even mid-load."""
    signal.signal(signal.SIGTERM, lambda *_: os.killpg(0, signal.SIGKILL))
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the run ends it through its input closing
    if os.getppid() == 1:  # the run died before the signal was armed
        os.killpg(0, signal.SIGKILL)


def main() -> None:
    end_with_the_run()
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # fd 1 now reaches stderr, for this process and the ones vLLM spawns
    setup = json.loads(sys.stdin.readline())
    import vllm
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    adapters = setup["adapters"]
    llm = LLM(
        model=setup["model"],
        revision=setup["revision"],
        dtype=setup["dtype"],
        max_model_len=setup["max_model_len"],
        gpu_memory_utilization=setup["memory"],
        enforce_eager=True,  # the compiled graph cache never reloaded on a CPU: each start recompiled for minutes
        seed=0,
        enable_lora=bool(adapters),
        **({"max_lora_rank": setup["max_lora_rank"], "max_loras": len(adapters)} if adapters else {}),
    )
    loras = {name: LoRARequest(name, number, path) for number, (name, path) in enumerate(adapters.items(), start=1)}
    send(replies, {"ready": vllm.__version__})
    for line in sys.stdin:
        request = json.loads(line)
        outputs = llm.generate(
            [{"prompt_token_ids": prompt["ids"]} for prompt in request["prompts"]],
            [SamplingParams(**prompt["params"]) for prompt in request["prompts"]],
            lora_request=loras.get(request["adapter"]),
            use_tqdm=False,
        )
        samples = [sorted(output.outputs, key=lambda sample: sample.index) for output in outputs]
        send(replies, {"outputs": [[list(sample.token_ids) for sample in n] for n in samples]})


def send(replies, message: dict) -> None:
    replies.write(json.dumps(message) + "\n")
    replies.flush()


if __name__ == "__main__":  # vLLM's engine process re-imports the main module when it spawns
    main()

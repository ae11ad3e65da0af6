"""A verify worker process (started by :mod:`.parallel`): resolves, verifies and, with ``--falsify``,
searches the specs it is handed.

It imports torch and the verifier first, then reads, on stdin, one job (or ``None``: nothing to do): the
spec files, the run settings, torch's thread count, the task modules to import, ``--falsify``'s
settings. Then, after each "ready" it sends, it reads the spec indices of a cluster to verify, or
``None`` to stop. On its stdout it sends pickled messages: ``("ready",)``, ``("group",)`` after each
claim group, ``("spec", index, SpecOutcome)`` after each spec, and ``("crash", traceback)`` if anything
unexpected stops it. Anything else the process prints goes to stderr, so the message stream stays clean.
"""

from __future__ import annotations

import importlib
import os
import pickle
import sys
import traceback
from pathlib import Path

from .parallel import _send


def main() -> None:
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not corrupt the message stream
    inbox = sys.stdin.buffer

    def send(message) -> None:
        _send(channel, message)

    try:
        from ..engine.memory import keep_freed_memory

        keep_freed_memory()  # as the command's own process does (cli.main)
        import torch  # the slow imports first, while the command's process resolves the specs

        for module in ("circuitspec.commands.check_cmd", "circuitspec.lang.resolve", "circuitspec.verify.verifier"):
            importlib.import_module(module)
        job = pickle.load(inbox)
        if job is None:  # the command found nothing for this worker to do
            return
        torch.set_num_threads(job["threads"])
        _serve(job, inbox, send)
    except BaseException:  # the command's own process verifies this worker's unfinished specs itself
        try:
            send(("crash", traceback.format_exc()))
        except OSError:
            pass
        raise SystemExit(1)
    channel.close()
    from ..cli import leave

    leave(0)  # the command waits for this process to end: skip the interpreter's teardown (cli.leave)


def _serve(job: dict, inbox, send) -> None:
    from ..commands.check_cmd import check_file
    from ..engine.tasks.project import import_tasks_module, load_project_tasks
    from .spec_outcome import verify_and_falsify
    from .verifier import shared_cache

    for module in job["tasks_modules"]:
        import_tasks_module(module, Path.cwd(), "--tasks-module")
    load_project_tasks(Path.cwd())
    settings, files = job["settings"], job["files"]
    caches: dict = {}
    while True:
        send(("ready",))
        indices = pickle.load(inbox)
        if indices is None:
            return
        for index in indices:
            resolved, _, _ = check_file(Path(files[index]))
            if resolved is None:
                raise RuntimeError(f"{files[index]} resolved in the command's process but not in a worker")
            resolved.context.model.to(settings.device)
            outcome = verify_and_falsify(resolved, settings, lambda: send(("group",)), shared_cache(caches, resolved),
                                         job.get("falsify"))
            send(("spec", index, outcome))


if __name__ == "__main__":
    main()

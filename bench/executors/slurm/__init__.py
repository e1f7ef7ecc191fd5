"""The Slurm executor: each task is a Slurm job submitted with submitit.

Tasks that ask for the same resources (CPUs, GPUs, memory, time limit) go into one job array
(``executor.batch()``). A job runs :func:`bench.executors.slurm.submit.run_task`, which executes the task and writes its result
as a record file ``RUN_DIR/records/<key>.npz`` (``TaskRecord.save``: atomic). Only the driver
(``bench run`` or ``bench status``) writes the SQLite store: it merges record files as they appear,
so jobs on a shared filesystem can never corrupt or lose results.

What was submitted (task specs, job ids, log paths) is kept in ``RUN_DIR/slurm/submitted.json``
so ``bench status RUN_DIR`` can follow a detached run. Job states come from ``squeue`` and the
record files, never from ``sacct`` (clusters without accounting storage have no ``sacct``). A job
that ends without a record (crash, time limit, out of memory, preemption without requeue, cancel)
is recorded as failed in the store with the tail of its submitit logs; ``bench run`` again
resubmits only the tasks that are not done.

Resources of a task: the generator's ``resources`` metadata (``cpus``, ``gpus``, ``mem_gb``,
``time_min``; optionally one such table per profile, e.g. ``{"quick": {...}, "paper": {...}}``),
then the executor's global overrides (``cpus = 4``), then per-model overrides
(``[executor.resources.activa]``). GPUs are requested only when the task's device allows them
(``--device cpu`` requests none). Requests larger than the partition's biggest node are lowered
to fit it, with a note.

Modules: :mod:`.resources` (what a task asks for), :mod:`.ledger` (what was submitted, merging
record files), :mod:`.queue` (job states from squeue), :mod:`.submit` (submitting job arrays and
what runs inside a job), :mod:`.executor` (the executor that ties them together).
"""

from bench.executors.slurm.executor import OPTIONS, SlurmExecutor

__all__ = ["OPTIONS", "SlurmExecutor"]

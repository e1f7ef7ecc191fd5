"""The introspective step as a CUDA graph (torch.cuda.graphs' whole-network recipe): a mixin of
:class:`~bench.generators.activa.train.ActivaTrainer` that copies each full batch and its draws into
static buffers and replays the captured step (forward, backward, both fused Adam steps)."""

from __future__ import annotations

import torch

from bench.generators.activa.batches import PinnedBatches
from bench.generators.activa.schedule import TrainConfig

# eager introspective steps (on a side stream) before the step is captured as a CUDA graph: lazy
# initialisations (cuBLAS workspaces, autocast, optimiser state) must not happen during capture
GRAPH_WARMUP_STEPS = 3


class GraphedIntroStep:
    """The captured introspective step of a trainer (its ``intro_step``, ``_host_batch``, optimisers
    and counters)."""

    cfg: TrainConfig
    device: torch.device
    opt_e: torch.optim.Optimizer
    opt_g: torch.optim.Optimizer
    intro_steps: int
    graphed_steps: int

    def _reset_graph(self) -> None:
        self._graph: torch.cuda.CUDAGraph | None = None
        self._graph_warm = 0
        self._static: dict[str, torch.Tensor] = {}
        self._graph_out: dict[str, torch.Tensor] = {}
        self._capturing = False
        self._pinned: PinnedBatches | None = None

    def graphed_intro_step(
        self, X: torch.Tensor, idx: torch.Tensor, noise: torch.Tensor, eps: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The introspective step on the full batch ``X[idx]`` through a CUDA graph: the batch and
        the draws are copied into static buffers and the captured step (forward, backward, both
        fused Adam steps) is replayed. The first ``GRAPH_WARMUP_STEPS`` calls run eagerly on a side
        stream, the next one captures (torch.cuda.graphs' whole-network recipe) and replays. The
        returned losses live in the graph's static outputs: read or accumulate them before the next
        call."""
        bs, dev = self.cfg.batch_size, self.device
        st = self._static
        if not st:
            st["x"] = torch.empty((bs, self.cfg.n_genes), device=dev)
            st["noise"] = torch.empty((bs, self.cfg.zdim), device=dev)
            st["eps"] = torch.empty((bs, self.cfg.zdim), device=dev)
        if X.device == dev:
            torch.index_select(X, 0, idx, out=st["x"])
        else:
            st["x"].copy_(self._host_batch(X, None, idx)[0])
        st["noise"].copy_(noise)
        st["eps"].copy_(eps)
        if self._graph is None and self._graph_warm < GRAPH_WARMUP_STEPS:
            cur = torch.cuda.current_stream(dev)
            side = torch.cuda.Stream(dev)
            side.wait_stream(cur)
            with torch.cuda.stream(side):
                out = self.intro_step(st["x"], st["noise"], st["eps"])
            cur.wait_stream(side)
            for v in out.values():
                v.record_stream(cur)
            self._graph_warm += 1
            return out
        if self._graph is None:
            graph = torch.cuda.CUDAGraph()
            # gradients are allocated inside the capture (its private pool) and rewritten by each replay
            self.opt_e.zero_grad(set_to_none=True)
            self.opt_g.zero_grad(set_to_none=True)
            self._capturing = True
            try:
                with torch.cuda.graph(graph):
                    self._graph_out = self.intro_step(st["x"], st["noise"], st["eps"])
            finally:
                self._capturing = False
            self._graph = graph  # capture counted this step in intro_steps; replay performs it
        else:
            self.intro_steps += 1
        self._graph.replay()
        self.graphed_steps += 1
        return self._graph_out

"""Classifier-free-guidance parallelism: the conditional and unconditional passes of each denoising step on two
groups of processes, combinable with diffusers' context parallelism on one device mesh.

A diffusers pipeline with guidance calls its denoiser once per step on a doubled batch (unconditional inputs
first, conditional second) and splits the prediction in two. :func:`apply_cfg_parallel` makes that one call
run half the batch on each process of the mesh's ``cfg`` dimension (coordinate 0 the conditional half,
coordinate 1 the unconditional one) and gathers the two predictions (``all_gather``) in the pipeline's order, so
every process sees the whole prediction and steps the scheduler identically; the pipeline's loop is unchanged.
diffusers has no CFG parallelism; its context parallelism takes the same mesh (:func:`parallel_mesh`, whose
``ring`` and ``ulysses`` dimensions it uses).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from genface.errors import InvalidArgumentError

#: The mesh's dimensions: guidance passes, then diffusers' context-parallel ones.
MESH_DIMS = ("cfg", "ring", "ulysses")
#: Which half of the doubled batch each ``cfg`` coordinate runs (diffusers puts the unconditional half first).
HALF_OF_RANK = (1, 0)


def parallel_mesh(ring_degree: int = 1, ulysses_degree: int = 1) -> Any:
    """A ``DeviceMesh`` of 2 guidance passes x ``ring_degree`` x ``ulysses_degree`` over all processes (dimensions
    :data:`MESH_DIMS`); ``torch.distributed`` must be initialised with exactly that many processes."""
    if not dist.is_available() or not dist.is_initialized():
        raise InvalidArgumentError(
            "CFG-parallel needs torch.distributed: run one process per GPU (torchrun --nproc-per-node N) and call "
            "torch.distributed.init_process_group() first."
        )
    shape = (len(HALF_OF_RANK), ring_degree, ulysses_degree)
    needed, world = shape[0] * ring_degree * ulysses_degree, dist.get_world_size()
    if world != needed:
        raise InvalidArgumentError(
            f"CFG-parallel with ring_degree={ring_degree} and ulysses_degree={ulysses_degree} needs 2 x "
            f"{ring_degree * ulysses_degree} = {needed} processes (one guidance pass per half); this run has {world}."
        )
    from torch.distributed.device_mesh import init_device_mesh

    # the device type diffusers' context parallelism builds its own mesh on
    return init_device_mesh(torch._C._get_accelerator().type, shape, mesh_dim_names=MESH_DIMS)


def _prediction(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output.sample


def apply_cfg_parallel(denoiser: torch.nn.Module, mesh: Any, batched: tuple[str, ...]) -> list[Any]:
    """Split each call of ``denoiser`` over the mesh's ``cfg`` dimension: the keyword inputs named in ``batched``
    (those holding the doubled batch) keep this process's half, and the prediction is gathered whole again.
    Returns the hook handles (remove them to undo)."""
    group, rank = mesh.get_group("cfg"), mesh.get_local_rank("cfg")
    half = HALF_OF_RANK[rank]

    def split(_: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        sizes = {name: kwargs[name].shape[0] for name in batched}
        if any(size % 2 for size in sizes.values()):
            raise InvalidArgumentError(
                f"CFG-parallel runs the conditional and unconditional halves of a doubled batch, got batch sizes "
                f"{sizes}: is guidance on (guidance_scale > 1)?"
            )
        return args, kwargs | {name: kwargs[name].chunk(2)[half] for name in batched}

    def gather(_: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        mine = _prediction(output).contiguous()
        parts = [torch.empty_like(mine) for _ in HALF_OF_RANK]
        dist.all_gather(parts, mine, group=group)
        whole = torch.cat([parts[HALF_OF_RANK.index(position)] for position in range(len(HALF_OF_RANK))])
        if isinstance(output, tuple):
            return (whole, *output[1:])
        output.sample = whole
        return output

    return [
        denoiser.register_forward_pre_hook(split, with_kwargs=True),
        denoiser.register_forward_hook(gather, with_kwargs=True),
    ]

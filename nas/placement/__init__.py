"""Device placement: real models traced into op graphs with measured costs, and a simulator of a training step."""

from l2l.nas.placement.graph import Op, OpGraph, PlacementError, colocation_units, group_ops, profile_model
from l2l.nas.placement.models import MODELS, PlacementModel, PlacementModelError, build_model
from l2l.nas.placement.simulator import Device, Interval, Machine, Schedule, memory_use, out_of_memory, simulate

__all__ = [
    "MODELS",
    "Device",
    "Interval",
    "Machine",
    "Op",
    "OpGraph",
    "PlacementError",
    "PlacementModel",
    "PlacementModelError",
    "Schedule",
    "build_model",
    "colocation_units",
    "group_ops",
    "memory_use",
    "out_of_memory",
    "profile_model",
    "simulate",
]

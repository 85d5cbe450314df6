"""Simulated L1 exposures: scene -> reads -> resultants, with the truth.

Main entry points: :func:`simulate` (files) and :func:`simulate_detector`
(in memory); scenes from :func:`random_scene` or :func:`read_scene`.
"""

from romanflow.simulate.core import (
    DetectorSimulation,
    ObservationIds,
    ab_to_electrons,
    simulate,
    simulate_detector,
    sky_rate,
    zero_point,
)
from romanflow.simulate.scene import Scene, gaia_catalog, random_scene, read_scene

__all__ = [
    "DetectorSimulation",
    "ObservationIds",
    "Scene",
    "ab_to_electrons",
    "gaia_catalog",
    "random_scene",
    "read_scene",
    "simulate",
    "simulate_detector",
    "sky_rate",
    "zero_point",
]

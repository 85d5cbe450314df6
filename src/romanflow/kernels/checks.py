"""Input checks shared by the kernels that take resultant cubes (ramp fitting, saturation).

They raise ``ValueError``: a mismatch here is a broken contract between the caller and the kernel.
"""

from __future__ import annotations

import numpy as np

from romanflow.detector import ReadPattern


def resultant_cube(resultants, read_pattern: ReadPattern) -> np.ndarray:
    """The resultants as an array of shape (n_resultants, ny, nx) matching the read pattern."""
    resultants = np.asarray(resultants)
    if resultants.ndim != 3:
        raise ValueError(f"resultants must be 3-D (n_resultants, ny, nx), got shape {resultants.shape}")
    if resultants.shape[0] != read_pattern.n_resultants:
        raise ValueError(f"resultants have {resultants.shape[0]} planes but the read pattern describes "
                         f"{read_pattern.n_resultants} resultants")
    return resultants

"""Shared test points and the angular separation used by the geometry tests."""

import numpy as np

#: Full-detector pixels: corners, centre and two interior points.
PIX_X = np.array([0.0, 4087.0, 0.0, 4087.0, 2043.5, 1000.3, 3500.7])
PIX_Y = np.array([0.0, 0.0, 4087.0, 4087.0, 2043.5, 3000.2, 200.1])


def sep_mas(ra1, dec1, ra2, dec2):
    """Small-angle separation (mas) between sky positions in degrees."""
    dra = ((np.asarray(ra1) - ra2 + 180.0) % 360.0 - 180.0) * np.cos(np.radians(dec1))
    return np.hypot(dra, np.asarray(dec1) - dec2) * 3.6e6

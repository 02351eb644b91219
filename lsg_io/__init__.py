"""The bottom of the project: what every other package may import (stdlib only, no numpy, no torch).

``files``: atomic files and staged directories, so a user's outputs are never lost or half-written.
"""

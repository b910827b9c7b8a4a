"""trainers: models, tasks and curricula that train the reference networks analysed by dynatools.

This package is being built (see the project's issues); it currently holds no public API.
It may import dynatools; dynatools never imports it.
"""

__all__: list[str] = []

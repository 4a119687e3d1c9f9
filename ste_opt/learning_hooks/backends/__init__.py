"""Transport backends of :class:`~ste_opt.learning_hooks.trainer.SplitFedTrainer`.

A backend carries the bytes of the roles in :mod:`ste_opt.learning_hooks.roles` (framed payloads,
gradient frames, adapter dicts) and implements ``run_round(...)``; see ``roles.LocalBackend``.

- ``ray_backend``     :class:`RayBackend`: client-worker actors and one server actor (Ray)
- ``flower_backend``  :class:`FlowerBackend`: a Flower ServerApp drives the exchanges
  (simulation engine in-process, or a deployed SuperLink + SuperNodes via ``learning_hooks/flower_app``)

Nothing here is imported eagerly: Ray and Flower load only when a backend is built.
"""

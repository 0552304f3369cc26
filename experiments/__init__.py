"""The paper folders, installed as `jaxpapers.experiments` (see `jaxpapers.core.registry`)."""

"""SRGAN models, their configs and their weights files."""
from rtsr.models.config import DiscriminatorConfig, GeneratorConfig, load_generator_config
from rtsr.models.srgan import Discriminator, Generator, fold_batchnorm

__all__ = [
    "DiscriminatorConfig",
    "Discriminator",
    "Generator",
    "GeneratorConfig",
    "fold_batchnorm",
    "load_generator_config",
]

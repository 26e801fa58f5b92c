"""The models by configured name: the one place a name becomes a model object."""

from __future__ import annotations

from streamer.core.models.heston import HestonModel
from streamer.core.models.protocol import Model
from streamer.core.models.sabr import SABRModel
from streamer.core.models.ssvi import SSVIModel
from streamer.core.models.svi import SVIModel

MODELS: dict[str, Model] = {m.name: m for m in (SVIModel(), SABRModel(), SSVIModel(),
                                                HestonModel())}


def model_for(name: str) -> Model:
    """The model object of a configured (or published) model name."""
    model = MODELS.get(name)
    if model is None:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS)}")
    return model

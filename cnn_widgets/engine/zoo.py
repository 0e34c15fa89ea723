"""Named torchvision / timm models, with random weights unless the user asks for downloadable ones."""

from __future__ import annotations

from .errors import ModelError
from .network import Network


def load_model(name: str, weights: str | None = None, source: str = "torchvision", **kwargs) -> Network:
    """A torchvision or timm CNN as a :class:`Network`.

    Parameters
    ----------
    name
        Model name, e.g. ``"alexnet"``, ``"vgg16"``, ``"resnet18"`` (torchvision) or any timm name.
    weights
        ``None`` (default): random weights, nothing is downloaded. ``"DEFAULT"`` or a torchvision
        weight name: downloads the weights (and their class names and preprocessing); offline this
        raises a :class:`ModelError` that says so. For timm, any non-None value means pretrained.
    source
        ``"torchvision"`` or ``"timm"``.
    """
    try:
        if source == "torchvision":
            import torchvision

            try:
                builder = torchvision.models.get_model_builder(name)
            except ValueError:
                raise ModelError(
                    f"torchvision has no model {name!r}; see torchvision.models.list_models()"
                ) from None
            model = builder(weights=weights, **kwargs)
            labels = preprocess = None
            if weights is not None:
                info = torchvision.models.get_model_weights(name).verify(weights)
                labels = info.meta.get("categories")
                preprocess = info.transforms()
            return Network(model, preprocess=preprocess, labels=labels, name=name)
        if source == "timm":
            import timm

            if name not in timm.list_models():
                raise ModelError(f"timm has no model {name!r}; see timm.list_models()")
            model = timm.create_model(name, pretrained=weights is not None, **kwargs)
            return Network(model, name=name)
    except ModelError:
        raise
    except (OSError, RuntimeError, ConnectionError) as exc:
        if weights is None:
            raise
        raise ModelError(
            f"could not download the {weights!r} weights of {name!r} ({type(exc).__name__}: {exc}); "
            "this machine may be offline. Use weights=None for random weights, or cw.load_default() "
            "for the offline ImageNet model"
        ) from exc
    raise ModelError(f"source must be 'torchvision' or 'timm', got {source!r}")

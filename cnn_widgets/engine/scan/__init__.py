"""Dataset scans: one forward pass over many images, bounded memory, resumable.

``scan(net, images)`` (``net.scan(images)``) runs the network once over a dataset and keeps, for
every channel ``c`` of every scanned layer ``L``:

* the top-``k`` images by spatial maximum ``m_i = max_{y,x} h^L_c(image_i)[y, x]`` with the
  position of that maximum: the "maximally activating images / patches" of Zeiler & Fergus
  ("Visualizing and Understanding Convolutional Networks", 2014, fig. 2) and Girshick et al.
  (R-CNN, 2014, pool5 units). Order: value descending, ties broken by the lower image index; a tie
  of positions inside one map goes to the first in row-major order. The result is independent of
  the batch size and of where a scan was interrupted and resumed;
* running statistics: mean activation, maximum, fraction of positions that are exactly zero
  (the sparsity of a rectified layer) and the number of images on which the channel fires at all
  (``m_i > 0``), from which :meth:`Scan.dead_channels` flags dead filters (Karpathy's cs231n notes,
  "Visualizing what ConvNets learn");
* a code per image: the global average pool of the layer (``[N, C]`` float per layer; the only
  memory that grows with the number of images, ``4 * N * C`` bytes in float32) for embeddings
  (PCA, and t-SNE of CNN codes as in Karpathy's "t-SNE visualization of CNN codes").

Everything else is bounded by ``k`` and the channel counts. Images are loaded and preprocessed
by a DataLoader (``num_workers`` in parallel) and scanned in batches under ``torch.no_grad`` and
``inference_state`` (eval mode, frozen parameters, flags restored afterwards); each layer is
reduced inside its forward hook as soon as its output exists (hooks removed after every batch, on
error and on Ctrl-C too), so the pass costs the plain forward plus a few reductions.

The parts, each importing only the ones listed before it:

* :mod:`.errors` -- :class:`ScanError` and :class:`ScanSaveWarning`;
* :mod:`.recipes` -- dataset recipes in scan files, checked against the package's own registry;
* :mod:`.sources` -- datasets, loaders, folders and lists as batches, and image ``i`` found again;
* :mod:`.state` -- the running per-layer top-k table, statistics and codes, and how a batch folds in;
* :mod:`.model` -- default layers and the fingerprint of the weights;
* :mod:`.storage` -- scan files (plain data, read with ``weights_only=True``);
* :mod:`.top_images` -- receptive-field crops and reconstructions of a unit's top images;
* :mod:`.embedding` -- PCA and t-SNE of the codes;
* :mod:`.result` -- the :class:`Scan` and its queries;
* :mod:`.batch` -- one batch's forward pass folded into every layer's state;
* :mod:`.ray_backend` and :mod:`.ray_driver` -- the same pass on Ray workers (``backend="ray"``);
* :mod:`.run` -- the entry point :func:`scan`.
"""

from .embedding import EMBEDDINGS
from .errors import ScanError, ScanSaveWarning
from .model import default_scan_layers, model_fingerprint
from .result import ChannelStats, Scan
from .run import scan
from .sources import IMAGE_EXTENSIONS
from .storage import FORMAT, VERSION
from .top_images import RECONSTRUCTIONS, TopImage, reconstruct

__all__ = [
    "EMBEDDINGS", "FORMAT", "IMAGE_EXTENSIONS", "RECONSTRUCTIONS", "VERSION", "ChannelStats", "Scan", "ScanError",
    "ScanSaveWarning", "TopImage", "default_scan_layers", "model_fingerprint", "reconstruct", "scan",
]

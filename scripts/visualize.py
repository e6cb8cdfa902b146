"""See what a trained network learned: `python scripts/visualize.py outputs/<run> filters|features|saliency|gradcam|class_model`.

filters      the first layer's kernels (RGB in colour); for an MLP, its first units' weights as images
features     the feature maps of a layer (--layer, default the first convolution) for one test image
saliency     vanilla gradient and SmoothGrad of the predicted class (captum), overlaid on test images
gradcam      Grad-CAM on the last convolution (captum), overlaid on test images
class_model  one image per class by gradient ascent on its score, with the probability the model gives it
Writes <run>/viz/<what>.png (and TensorBoard)."""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dlcourse.errors import UserError  # noqa: E402
from dlcourse.usercode import add_search_dir  # noqa: E402


def main(argv=None) -> int:
    from dlcourse.viz import WHAT, visualize

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[2:]))
    p.add_argument("run", help="a run directory (its best.pt) or a checkpoint file")
    p.add_argument("what", choices=WHAT)
    p.add_argument("--images", type=int, default=6, help="test images for saliency and gradcam")
    p.add_argument("--index", type=int, default=0, help="first test image used")
    p.add_argument("--layer", help="a layer name (features, gradcam), e.g. features.3")
    p.add_argument("--steps", type=int, default=200, help="class_model: gradient-ascent steps")
    p.add_argument("--device", default="cpu")
    p.add_argument("--config-dir", action="append", default=[], metavar="FOLDER",
                   help="a folder whose python files the run's _target_s name (a lab folder), as with train.py")
    a = p.parse_args(argv)
    for folder in a.config_dir:
        add_search_dir(folder)
    try:
        path, _ = visualize(a.run, a.what, a.images, a.index, a.layer, a.steps, a.device)
    except UserError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 2
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

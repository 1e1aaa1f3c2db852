"""Write the small ref/ and dist/ folders that the README's command-line example scores.

    python examples/cli_example.py /tmp/cli_example     # needs scikit-image and Pillow
    cd /tmp/cli_example && fastssim compare ref dist --match stem

ref/ holds 192x192 crops of scikit-image's sample images as PNG; dist/ holds
distorted versions: two JPEGs (quality 15 and 40), a blurred and noisy PNG, a
16-bit PNG with noise, and one crop of the wrong size (to show a failed row).
"""

from __future__ import annotations

import os
import sys

import numpy as np
from PIL import Image, ImageFilter
from skimage import data


def main(root):
    ref, dist = os.path.join(root, "ref"), os.path.join(root, "dist")
    os.makedirs(ref, exist_ok=True)
    os.makedirs(dist, exist_ok=True)
    rng = np.random.default_rng(15)
    camera = data.camera()[110:302, 170:362]
    coffee = data.coffee()[100:292, 150:342]
    astro = data.astronaut()[20:212, 150:342]
    cat = data.chelsea()[20:212, 120:312]
    moon = (data.moon()[160:352, 160:352].astype(np.uint16) * 257)  # 16-bit

    Image.fromarray(camera).save(os.path.join(ref, "camera.png"))
    Image.fromarray(camera).save(os.path.join(dist, "camera.jpg"), quality=15)
    Image.fromarray(coffee).save(os.path.join(ref, "coffee.png"))
    Image.fromarray(coffee).save(os.path.join(dist, "coffee.jpg"), quality=40)
    Image.fromarray(astro).save(os.path.join(ref, "astronaut.png"))
    blurred = np.asarray(Image.fromarray(astro).filter(ImageFilter.GaussianBlur(1.2)), np.float64)
    noisy = np.clip(blurred + rng.normal(0, 6, blurred.shape), 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(os.path.join(dist, "astronaut.png"))
    Image.fromarray(moon).save(os.path.join(ref, "moon.png"))
    m = np.clip(moon + rng.normal(0, 1500, moon.shape), 0, 65535).astype(np.uint16)
    Image.fromarray(m).save(os.path.join(dist, "moon.png"))
    Image.fromarray(cat).save(os.path.join(ref, "chelsea.png"))
    Image.fromarray(cat[:186]).save(os.path.join(dist, "chelsea.png"))  # wrong size


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "cli_example")

"""Smoke test of the cv theme: torch, torchvision's models and transforms, Pillow and OpenCV on one image."""

import cv2
import numpy as np
import PIL
import torch
import torchvision
from PIL import Image
from torchvision.models import resnet18
from torchvision.transforms import functional as F

pixels = (np.arange(64 * 64 * 3) % 255).astype("uint8").reshape(64, 64, 3)
resized = cv2.resize(pixels, (32, 32))
batch = F.to_tensor(Image.fromarray(resized)).unsqueeze(0)
model = resnet18(weights=None, num_classes=3).eval()
with torch.no_grad():
    logits = model(batch)
assert logits.shape == (1, 3), logits.shape
print(
    f"smoke cv: ok (torch {torch.__version__}, torchvision {torchvision.__version__}, Pillow {PIL.__version__}, "
    f"OpenCV {cv2.__version__})"
)

"""Native backend: a compact OneFormer3D-style model (SpConv U-Net + query decoder) trained through mmengine."""

# Copied verbatim from microsoft/GLIP (commit 9dda955),
# maskrcnn_benchmark/modeling/backbone/swint_v2.py, class ConvEmbed (lines 442-496).
# MIT License, Copyright (c) Microsoft Corporation. See NOTICES.md.
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange


class ConvEmbed(nn.Module):
    """ Image to Patch Embedding
    """

    def __init__(
        self,
        patch_size=7,
        in_chans=3,
        embed_dim=64,
        stride=4,
        padding=2,
        norm_layer=None
    ):
        super().__init__()
        self.patch_size = patch_size
        self.embed_dim = embed_dim

        self.proj = nn.Conv2d(
            in_chans, embed_dim,
            kernel_size=patch_size,
            stride=stride,
            padding=padding
        )
        self.norm = norm_layer(embed_dim) if norm_layer else None

    def forward(self, x, H=None, W=None):
        restore_hw = False
        if H is None and W is None and len(x.size()) == 4:
            _, _, H, W = x.size()
            if W % self.patch_size != 0:
                x = F.pad(x, (0, self.patch_size - W % self.patch_size))
            if H % self.patch_size != 0:
                x = F.pad(x, (0, 0, 0, self.patch_size - H % self.patch_size))
            restore_hw = True

        if len(x.size()) == 3:
            x = rearrange(
                x, 'b (h w) c -> b c h w',
                h=H,
                w=W
            )
        x = self.proj(x)  # B C Wh Ww
        B, C, Wh, Ww = x.shape
        x = rearrange(x, 'b c h w -> b (h w) c')
        if self.norm:
            x = self.norm(x)

        if restore_hw:
            x = rearrange(
                x, 'b (h w) c -> b c h w',
                h=Wh,
                w=Ww
            )

        return x

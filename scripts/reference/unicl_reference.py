"""Reference two-tower UniCL models assembled from code nobody in this project wrote.

* Image tower, Swin: timm's `SwinTransformer` (timm 1.0.22), re-keyed to the original
  Microsoft layout that UniCL checkpoints use (`layers.{i}.downsample` at the *end* of stage i,
  persistent `relative_position_index` / `attn_mask` buffers).
* Image tower, CoSwin: the same timm Swin stages with the patch embedding and every patch
  merging replaced by CvT convolutional embeddings (GLIP's `ConvEmbed`, copied verbatim into
  third_party/), as GLIP's swint_v2.py builds its CoSwin-like backbone
  (https://github.com/microsoft/GLIP/blob/9dda955/maskrcnn_benchmark/modeling/backbone/swint_v2.py).
* Text tower: UniCL's `Transformer` (copied verbatim into third_party/).
* encode_image / encode_text / forward: the bodies of UniCL `model/model.py` (`UniCLModel`).
"""
import re
import sys
from pathlib import Path

import torch
from torch import nn
import timm
from timm.models.swin_transformer import SwinTransformer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from third_party.glip_conv_embed import ConvEmbed  # noqa: E402
from third_party.unicl_text_transformer import Transformer  # noqa: E402


class ConvEmbedNHWC(nn.Module):
    """Adapts GLIP's token-mode ConvEmbed to timm's NHWC stage interface.

    The stem is called with H and W given, which takes GLIP's token path and skips its
    pad-to-multiple-of-7 quirk, i.e. it is exactly CvT's ConvEmbed (conv -> tokens -> LN).
    """

    def __init__(self, kernel, in_ch, out_ch, stride, padding, is_stem=False):
        super().__init__()
        self.is_stem = is_stem
        self.inner = ConvEmbed(kernel, in_ch, out_ch, stride, padding, nn.LayerNorm)
        self.stride = stride
        self.kernel = kernel
        self.padding = padding

    def forward(self, x):
        if self.is_stem:  # NCHW image
            B, _, H, W = x.shape
            y = self.inner(x, H, W)
        else:  # NHWC feature map
            B, H, W, C = x.shape
            y = self.inner(x.reshape(B, H * W, C), H, W)
        Ho = (H + 2 * self.padding - self.kernel) // self.stride + 1
        Wo = (W + 2 * self.padding - self.kernel) // self.stride + 1
        return y.reshape(B, Ho, Wo, -1)


def build_image_encoder(cfg, strict_img_size=True):
    m = SwinTransformer(
        img_size=cfg["image_size"], patch_size=cfg["patch_size"], in_chans=3, num_classes=0,
        embed_dim=cfg["embed_dim"], depths=tuple(cfg["depths"]), num_heads=tuple(cfg["num_heads"]),
        window_size=cfg["window_size"], mlp_ratio=cfg["mlp_ratio"], qkv_bias=True,
        drop_path_rate=0.0, strict_img_size=strict_img_size,
    )
    if cfg["embedding"] == "conv":
        C = cfg["embed_dim"]
        m.patch_embed = ConvEmbedNHWC(7, 3, C, 4, 2, is_stem=True)
        for i in range(1, len(cfg["depths"])):
            m.layers[i].downsample = ConvEmbedNHWC(3, C * 2 ** (i - 1), C * 2 ** i, 2, 1)
    return m.eval()


class UniCLReference(nn.Module):
    def __init__(self, cfg, strict_img_size=True):
        super().__init__()
        t = cfg["text"]
        self.text_encoder = Transformer(t["context_length"], t["vocab_size"], t["width"], t["layers"], t["heads"],
                                        autogressive=t["causal"])
        self.image_encoder = build_image_encoder(cfg["image"], strict_img_size)
        dim_out = cfg["image"]["embed_dim"] * 2 ** (len(cfg["image"]["depths"]) - 1)
        self.text_projection = nn.Parameter(torch.empty(t["width"], cfg["projection_dim"]))
        self.image_projection = nn.Parameter(torch.empty(dim_out, cfg["projection_dim"]))
        self.logit_scale = nn.Parameter(torch.ones([]))
        self.conf_lang_encoder = {"TOKENIZER": "clip"}

    # ---- UniCL model/model.py, UniCLModel.encode_image / encode_text / forward (verbatim bodies) ----
    def encode_image(self, image, norm=True):
        x = self.image_encoder.forward_features(image)
        x = x.mean(dim=(1, 2))  # timm returns NHWC after the final norm; UniCL's Swin pools here
        x = x @ self.image_projection

        if norm:
            x = x / x.norm(dim=-1, keepdim=True)

        return x

    def encode_text(self, text, norm=True):
        x = self.text_encoder(**text)
        x = x['last_hidden_state']

        if self.conf_lang_encoder['TOKENIZER'] == 'clip':
            x = x[torch.arange(x.size(0)), text['input_ids'].argmax(dim=-1)]
        else:
            x = x[:, 0]

        x = x @ self.text_projection

        if norm:
            x = x / x.norm(dim=-1, keepdim=True)

        return x

    def forward(self, image, text):
        features_image = self.encode_image(image)
        features_text = self.encode_text(text)

        # cosine similarity as logits
        T = self.logit_scale.exp()

        return features_image, features_text, T


def randomize_(model, seed):
    """Random weights in which every parameter matters (LayerNorm gains, biases, the
    relative-position tables), rounded to fp16 so an fp16 checkpoint holds them exactly."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "logit_scale":
                p.fill_(2.6592)  # log(1/0.07), CLIP's init
            elif name.endswith("relative_position_bias_table"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            elif re.search(r"(norm\d?|ln_\d|ln_final)\.weight$", name):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p.shape[-1] if p.dim() == 2 else (p[0].numel() if p.dim() > 2 else 1)
                std = 0.02 if "embedding" in name else (1.0 / max(fan_in, 1)) ** 0.5
                p.copy_(torch.randn(p.shape, generator=g) * std)
            p.copy_(p.half().float())
    return model


def timm_to_microsoft(sd, image_encoder):
    """timm keys -> original Microsoft Swin layout (what UniCL checkpoints hold).

    timm puts stage i's downsample at the start of stage i+1 (`layers.{i+1}.downsample`); the
    original code puts it at the end of stage i. timm's buffers are non-persistent; the original
    saves `relative_position_index` for every block and `attn_mask` for shifted blocks."""
    out = {}
    for k, v in sd.items():
        m = re.match(r"layers\.(\d+)\.downsample\.(.*)", k)
        if m:
            k = f"layers.{int(m.group(1)) - 1}.downsample.{m.group(2)}"
        k = k.replace("downsample.inner.", "downsample.").replace("patch_embed.inner.", "patch_embed.")
        out[k] = v
    for si, stage in enumerate(image_encoder.layers):
        for bi, blk in enumerate(stage.blocks):
            out[f"layers.{si}.blocks.{bi}.attn.relative_position_index"] = blk.attn.relative_position_index.clone()
            if blk.attn_mask is not None:
                out[f"layers.{si}.blocks.{bi}.attn_mask"] = blk.attn_mask.clone()
    return out


def unicl_state_dict(model):
    """The whole two-tower state dict in UniCL's naming (convention A)."""
    sd = {}
    img = {k: v for k, v in model.image_encoder.state_dict().items()}
    for k, v in timm_to_microsoft(img, model.image_encoder).items():
        sd["image_encoder." + k] = v
    for k, v in model.text_encoder.state_dict().items():
        sd["text_encoder." + k] = v
    sd["image_projection"] = model.image_projection.detach().clone()
    sd["text_projection"] = model.text_projection.detach().clone()
    sd["logit_scale"] = model.logit_scale.detach().clone()
    return {k: v.contiguous() for k, v in sd.items()}

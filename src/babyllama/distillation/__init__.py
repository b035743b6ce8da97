"""Ensemble distillation: teachers as live or cached sources (``sources``), the cache's format, key and builder
(``cache``), the divergences (``divergences``), the loss object (``loss``) and its fused kernels (``fused``), and
the Trainer that applies it (``trainer``).

The names of the divergences and the settings each reads live here, free of torch, for the config and the
runner's stage keys."""

DIVERGENCES = ("forward_kl", "reverse_kl", "jsd", "skew_kl", "skew_reverse_kl", "tvd", "alpha_beta")
# the DistillConfig fields each divergence reads; a stage's key holds only these
PARAMETERS = {"jsd": ("jsd_beta",), "skew_kl": ("skew",), "skew_reverse_kl": ("skew",),
              "alpha_beta": ("ab_alpha", "ab_beta")}
ALL_PARAMETERS = ("jsd_beta", "skew", "ab_alpha", "ab_beta")


def describe_divergence(distill: dict) -> str:
    """The divergence of a saved ``distill:`` section with the settings it reads, e.g. ``jsd (jsd_beta 0.1)``;
    sections saved before divergences existed are the forward KL."""
    name = distill.get("divergence", "forward_kl")
    settings = ", ".join(f"{k} {distill[k]:g}" for k in PARAMETERS.get(name, ()) if k in distill)
    return f"{name} ({settings})" if settings else name

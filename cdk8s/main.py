"""Build the filesim cdk8s app and synthesize it (what `cdk8s synth` runs).

FILESIM_VALUES (colon-separated files) and FILESIM_TARGET (kubernetes | podman) select what.
"""

import os

from filesim import values
from filesim.manifests import Target, build_app

files = [f for f in os.environ.get("FILESIM_VALUES", "").split(":") if f]
app = build_app(values.load(files), Target(os.environ.get("FILESIM_TARGET", "kubernetes")))
app.synth()

"""The router's view of the cluster (``ClusterView``)."""

from phaser.cluster.view import ClusterView, InstanceView

__all__ = ["ClusterView", "InstanceView"]

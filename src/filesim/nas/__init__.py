"""What runs in a NAS pod beside the sync agent: the NFS server's supervisor and its faults."""

"""filesim-sync: a loss-free sync agent between an NFS export and a Windows share.

Standard library plus watchdog only: it runs inside the NAS image.
"""

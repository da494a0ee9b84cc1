"""filesim-sync: a loss-free sync agent between an NFS export and a Windows share.

Standard library only (plus inotifywait from inotify-tools): it runs inside the NAS image.
"""

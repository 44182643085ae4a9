"""wan_core.sampling"""

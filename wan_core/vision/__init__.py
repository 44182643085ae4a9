"""wan_core.vision"""

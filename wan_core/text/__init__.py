"""wan_core.text"""

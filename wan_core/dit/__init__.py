"""wan_core.dit"""

"""apps.medical"""

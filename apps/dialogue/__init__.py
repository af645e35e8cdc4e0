"""apps.dialogue"""

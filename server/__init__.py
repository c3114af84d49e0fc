"""collabcoder.server"""

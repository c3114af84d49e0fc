"""collabcoder.server.backends"""

"""fbnas.lut"""

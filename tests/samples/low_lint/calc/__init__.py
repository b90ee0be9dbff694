import os, sys
def Mul(A,B):
    x=A*B
    return x
def unused(a, b, c):
    l = 1
    return a

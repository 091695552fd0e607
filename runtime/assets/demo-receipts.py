# Makes the demo's receipts as real PDFs, in the sandbox, with the tool
# image's reportlab. Input (stdin): one line per receipt,
# "file|date|vendor|client|amount|kind" where kind is "text" (a PDF with a
# text layer) or "scan" (a page image only: a rendered, slightly rotated
# and speckled picture, so reading it needs OCR).
import random, subprocess, sys, tempfile, os
from reportlab.lib.pagesizes import A5
from reportlab.pdfgen import canvas
from PIL import Image, ImageFilter

random.seed(17)

def draw(path, date, vendor, client, amount):
    c = canvas.Canvas(path, pagesize=A5)
    w, h = A5
    c.setFont("Helvetica-Bold", 22); c.drawString(40, h - 70, "RECEIPT")
    c.setFont("Helvetica", 15)
    y = h - 120
    for line in (f"Date: {date}", f"Vendor: {vendor}", f"Client: {client}", f"Amount: {amount} EUR"):
        c.drawString(40, y, line); y -= 30
    c.setFont("Helvetica", 9); c.drawString(40, 40, "Thank you for your business.")
    c.save()

for line in sys.stdin.read().splitlines():
    name, date, vendor, client, amount, kind = line.split("|")
    out = os.path.join("receipts", name)
    if kind == "text":
        draw(out, date, vendor, client, amount)
        continue
    with tempfile.TemporaryDirectory() as t:
        src = os.path.join(t, "src.pdf")
        draw(src, date, vendor, client, amount)
        subprocess.run(["pdftoppm", "-r", "200", "-gray", "-png", "-singlefile", src, os.path.join(t, "page")], check=True)
        im = Image.open(os.path.join(t, "page.png")).convert("L")
        im = im.rotate(0.8, expand=True, fillcolor=255).filter(ImageFilter.GaussianBlur(0.6))
        px = im.load()
        for _ in range(im.size[0] * im.size[1] // 400):
            px[random.randrange(im.size[0]), random.randrange(im.size[1])] = random.randrange(120, 220)
        scan = os.path.join(t, "scan.png")
        im.save(scan)
        c = canvas.Canvas(out, pagesize=A5)
        c.drawImage(scan, 0, 0, width=A5[0], height=A5[1])
        c.save()
    print(out)

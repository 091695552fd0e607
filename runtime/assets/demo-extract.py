# The demo session's extraction step, run in the sandbox: read every
# receipt (pdftotext; tesseract for scanned pages with no text layer), total
# them per client, and write reports/by-client.xlsx (a sheet per client and
# a totals sheet), reports/by-client.csv, reports/summary-<client>.docx and
# reports/cover.pdf. OCR may drop a colon ("Client Acme"): the labels are
# matched with or without it.
import collections, csv, glob, re, subprocess, tempfile, os
import openpyxl, docx
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

def text_of(path):
    t = subprocess.run(["pdftotext", "-layout", path, "-"], capture_output=True, text=True, check=True).stdout
    if t.strip():
        return t, "pdftotext"
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(["pdftoppm", "-r", "300", "-gray", "-png", "-singlefile", path, os.path.join(d, "p")], check=True)
        t = subprocess.run(["tesseract", os.path.join(d, "p.png"), "-", "--psm", "6"], capture_output=True, text=True, check=True).stdout
    return t, "tesseract"

rows = collections.defaultdict(list)
for path in sorted(glob.glob("receipts/*.pdf")):
    text, how = text_of(path)
    f = {k.strip().lower(): v.strip() for k, v in re.findall(r"^\s*(Date|Vendor|Client|Amount)\b\s*[:;.,]?\s*(.+?)\s*$", text, re.M)}
    amount = float(re.search(r"\d+[.,]\d{2}", f["amount"]).group(0).replace(",", "."))
    rows[f["client"]].append((os.path.basename(path), f["date"], f["vendor"], amount, how))
    print(f"{path}: {f['client']} {amount:.2f} EUR ({how})")

wb = openpyxl.Workbook()
summary = wb.active; summary.title = "Totals"; summary.append(["client", "receipts", "total_eur"])
with open("reports/by-client.csv", "w", newline="") as out:
    w = csv.writer(out); w.writerow(["client", "receipts", "total_eur"])
    for client in sorted(rows):
        items = rows[client]; total = round(sum(r[3] for r in items), 2)
        ws = wb.create_sheet(client); ws.append(["file", "date", "vendor", "amount_eur", "read_with"])
        for r in items:
            ws.append(list(r))
        ws.append(["Total", "", "", total, ""])
        summary.append([client, len(items), total]); w.writerow([client, len(items), "%.2f" % total])
        d = docx.Document(); d.add_heading(f"{client}: expenses", 1)
        d.add_paragraph(f"{len(items)} receipts, total {total:.2f} EUR.")
        t = d.add_table(rows=1, cols=3); t.rows[0].cells[0].text, t.rows[0].cells[1].text, t.rows[0].cells[2].text = "Date", "Vendor", "EUR"
        for r in items:
            c = t.add_row().cells; c[0].text, c[1].text, c[2].text = r[1], r[2], "%.2f" % r[3]
        d.add_paragraph(f"Total: {total:.2f} EUR")
        d.save(f"reports/summary-{client.lower()}.docx")
wb.save("reports/by-client.xlsx")
c = canvas.Canvas("reports/cover.pdf", pagesize=A4); y = 780
c.setFont("Helvetica-Bold", 18); c.drawString(60, y, "Expenses by client"); y -= 40; c.setFont("Helvetica", 12)
for client in sorted(rows):
    c.drawString(60, y, f"{client}: {len(rows[client])} receipts, {sum(r[3] for r in rows[client]):.2f} EUR"); y -= 22
c.save()
for client in sorted(rows):
    print(f"{client}: {len(rows[client])} receipts, {sum(r[3] for r in rows[client]):.2f} EUR")

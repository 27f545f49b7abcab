function daskmaskerStep(button, delta) {
  var box = button.closest(".image");
  var imgs = box.querySelectorAll("img.map");
  var cur = 0;
  for (var i = 0; i < imgs.length; i++) { if (imgs[i].style.display !== "none") { cur = i; } }
  imgs[cur].style.display = "none";
  var nxt = (cur + delta + imgs.length) % imgs.length;
  imgs[nxt].style.display = "block";
  box.querySelector(".map-name").textContent = imgs[nxt].getAttribute("data-label");
}

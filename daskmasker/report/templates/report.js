function step(uid, delta){var imgs=document.querySelectorAll('#carousel-'+uid+' img');
var cur=0;for(var i=0;i<imgs.length;i++){if(!imgs[i].classList.contains('hidden')){cur=i;}}
imgs[cur].classList.add('hidden');var nxt=(cur+delta+imgs.length)%imgs.length;
imgs[nxt].classList.remove('hidden');document.getElementById('label-'+uid).textContent=
imgs[nxt].getAttribute('data-label');}
